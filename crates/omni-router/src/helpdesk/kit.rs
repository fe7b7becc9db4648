//! The conformance kit for helpdesk adapters (tests, and the `kit` feature).
//!
//! Every adapter's tests run the same crash-safety scenarios against that adapter's fake of its
//! helpdesk's documented API, with one line: `helpdesk_conformance!(MyFake::start());`, where
//! `MyFake` implements [`Fake`]. Where the helpdesk itself runs here (Request Tracker), the
//! end-to-end tests run the kit against it through a fault-injecting proxy, with omni-router's
//! `kit` feature (`tests/tests/rt_conformance.rs`). The scenarios are what the router's delivery
//! relies on:
//!
//! - a ticket whose creation answer was lost is found by its conversation, with the event that
//!   opened it (so a retry appends instead of opening a second ticket);
//! - a follow-up whose answer was lost is found on the ticket (so a retry adds nothing);
//! - a destination omni cannot ask (the webhook, [`Fake::answers_lookups`] false) finds
//!   nothing, is sent the same event again and still holds one ticket (its receiver
//!   deduplicates);
//! - a closed connection, a 5xx and an unanswered call are transient;
//! - a 429 is a rate limit that honours `Retry-After`;
//! - a 403 needs an operator (retried, never dead-lettered); another 4xx is permanent.
//!
//! The kit also holds the in-process HTTP server most fakes run on ([`start`], [`serve`]) and
//! a closing server, so no adapter carries its own copy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{Body, Channel, ContactIdentifier, ConversationEvent, Direction, Participant};
use tokio::io::AsyncReadExt;

use super::{Helpdesk, HelpdeskError, Routing};

/// The conversation of the kit's events.
pub const CONVERSATION: &str = "5d0c9f7e2b8a41c6a3e1f0b2c4d6e8fa";
/// The event that opens it.
pub const OPENING: &str = "0f3a9c1e7b5d4f2a8c6e1b3d5f7a9c0e";
/// A later event of it.
pub const FOLLOW_UP: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// A helpdesk's fake, as the scenarios drive it.
pub trait Fake: Send + Sync {
    /// The adapter, talking to this fake, with a timeout of a second or so.
    fn adapter(&self) -> Box<dyn Helpdesk>;
    /// The adapter with its API calls sent to `base_url` instead (its sign-in still to the fake).
    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk>;
    /// The next ticket creation or follow-up is applied, but its answer never comes.
    fn lose_next_write(&self);
    /// The next API call (a sign-in left out) is answered with `failure` and changes nothing.
    fn fail_next_call(&self, failure: Failure);
    /// How many tickets the fake holds (for the kit's conversation).
    fn tickets(&self) -> usize;
    /// The conversation the scenarios write to: a helpdesk that outlives the test (a real one)
    /// needs a fresh one per fake.
    fn conversation(&self) -> String {
        CONVERSATION.to_owned()
    }
    /// Whether the adapter can ask the helpdesk what it holds; false for a receiver that must
    /// deduplicate by itself (the webhook destination).
    fn answers_lookups(&self) -> bool {
        true
    }
}

/// The state of a small helpdesk fake served by [`start`] (Freshdesk's, Zammad's): with it,
/// [`DeskFake`] is that adapter's [`Fake`].
pub trait Desk: Send + 'static {
    /// The next ticket creation or follow-up is stored, its answer never sent.
    fn lose_next_write(&mut self);
    /// How many tickets it holds.
    fn tickets(&self) -> usize;
}

/// A [`Desk`] on the kit's server, with the adapter that talks to it.
pub struct DeskFake<D> {
    /// The server.
    pub served: Served,
    /// The fake's state.
    pub desk: Arc<Mutex<D>>,
    adapter: fn(&str) -> Box<dyn Helpdesk>,
}

impl<D: Desk> DeskFake<D> {
    /// Serves `desk`, answering with `reply`; `adapter` makes the adapter for a base URL.
    pub async fn start(desk: D, reply: fn(&Mutex<D>, &Call) -> Reply, adapter: fn(&str) -> Box<dyn Helpdesk>) -> Self {
        let desk = Arc::new(Mutex::new(desk));
        let state = desk.clone();
        let served = start(move |call| reply(&state, call)).await;
        Self { served, desk, adapter }
    }

    /// The base URL, the calls received and the state, for tests that drive the fake by hand.
    pub fn into_parts(self) -> (String, Calls, Arc<Mutex<D>>) {
        (self.served.url, self.served.calls, self.desk)
    }
}

impl<D: Desk> Fake for DeskFake<D> {
    fn adapter(&self) -> Box<dyn Helpdesk> {
        (self.adapter)(&self.served.url)
    }

    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk> {
        (self.adapter)(base_url)
    }

    fn lose_next_write(&self) {
        self.desk.lock().unwrap().lose_next_write();
    }

    fn fail_next_call(&self, failure: Failure) {
        self.served.fail_next_call(failure);
    }

    fn tickets(&self) -> usize {
        self.desk.lock().unwrap().tickets()
    }
}

/// An error answer a fake gives instead of doing the work.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// Response body.
    pub body: &'static str,
}

impl Failure {
    /// The failure as an HTTP response, for fakes with handlers of their own.
    pub fn response(&self) -> Response {
        raw_response(self.status, self.headers, self.body)
    }

    const fn json(status: u16, body: &'static str) -> Self {
        Self {
            status,
            headers: &[("content-type", "application/json")],
            body,
        }
    }
}

/// A customer's message on WhatsApp in the kit's conversation, the customer known by phone and email.
pub fn event(event_id: &str, text: &str) -> ConversationEvent {
    event_in(CONVERSATION, event_id, text)
}

/// [`event`] in `conversation`.
pub fn event_in(conversation: &str, event_id: &str, text: &str) -> ConversationEvent {
    ConversationEvent {
        event_id: event_id.into(),
        conversation_id: conversation.into(),
        channel: Channel::Whatsapp as i32,
        direction: Direction::Inbound as i32,
        participants: vec![Participant {
            role: Role::Customer as i32,
            display_name: "Ayşe Yılmaz".into(),
            identifiers: vec![
                identifier(Kind::Phone, "+905551112233"),
                identifier(Kind::Email, "ayse@example.com"),
            ],
        }],
        body: Some(Body {
            text: text.into(),
            ..Default::default()
        }),
        tags: vec!["shipping".into()],
        ..Default::default()
    }
}

/// A contact identifier without a platform.
pub fn identifier(kind: Kind, value: &str) -> ContactIdentifier {
    ContactIdentifier {
        kind: kind as i32,
        value: value.into(),
        platform: String::new(),
    }
}

/// Runs every scenario against fresh fakes from `start`, one scenario a test.
#[macro_export]
macro_rules! helpdesk_conformance {
    ($start:expr) => {
        /// The helpdesk conformance kit (`helpdesk::kit`) against this adapter's fake.
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn a_create_whose_answer_was_lost_is_found_by_its_origin_event() {
                $crate::helpdesk::kit::a_create_whose_answer_was_lost_is_found_by_its_origin_event(&$start.await).await;
            }

            #[tokio::test]
            async fn a_follow_up_whose_answer_was_lost_is_found_on_the_ticket() {
                $crate::helpdesk::kit::a_follow_up_whose_answer_was_lost_is_found_on_the_ticket(&$start.await).await;
            }

            #[tokio::test]
            async fn a_closed_connection_or_no_answer_is_transient() {
                $crate::helpdesk::kit::a_closed_connection_or_no_answer_is_transient(&$start.await).await;
            }

            #[tokio::test]
            async fn statuses_map_to_retry_operator_or_dead_letter() {
                $crate::helpdesk::kit::statuses_map_to_retry_operator_or_dead_letter(&$start.await).await;
            }
        }
    };
}
pub use helpdesk_conformance;

/// Creation applied, answer lost; after the restart the router looks the conversation up first
/// (or, with nothing to ask, sends the event again).
pub async fn a_create_whose_answer_was_lost_is_found_by_its_origin_event(fake: &impl Fake) {
    let conversation = fake.conversation();
    let opening = event_in(&conversation, OPENING, "Siparişim nerede?");
    let helpdesk = fake.adapter();
    assert_eq!(helpdesk.find_ticket(&conversation).await.unwrap(), None, "an empty helpdesk");
    fake.lose_next_write();
    let error = helpdesk
        .create_ticket(&opening, &Routing::default())
        .await
        .expect_err("a lost answer is transient");
    assert!(
        matches!(error, HelpdeskError::Unavailable(_)),
        "a lost answer is transient: {error:?}"
    );
    assert_eq!(fake.tickets(), 1, "the helpdesk made the ticket");

    let helpdesk = fake.adapter();
    match helpdesk.find_ticket(&conversation).await.unwrap() {
        Some(found) => {
            assert_eq!(found.origin_event_id, OPENING);
            assert!(!found.ticket.id.is_empty());
        }
        None => {
            assert!(!fake.answers_lookups(), "the ticket is found");
            helpdesk
                .create_ticket(&opening, &Routing::default())
                .await
                .expect("the same event sent again is taken");
        }
    }
    assert_eq!(fake.tickets(), 1, "looking up (or sending again) makes no second ticket");
}

/// Follow-up applied, answer lost; after the restart the router asks before appending again
/// (or, with nothing to ask, appends the same event again).
pub async fn a_follow_up_whose_answer_was_lost_is_found_on_the_ticket(fake: &impl Fake) {
    let conversation = fake.conversation();
    let helpdesk = fake.adapter();
    let ticket = helpdesk
        .create_ticket(&event_in(&conversation, OPENING, "Siparişim nerede?"), &Routing::default())
        .await
        .unwrap();
    assert!(!helpdesk.has_event(&ticket, FOLLOW_UP).await.unwrap(), "not appended yet");
    fake.lose_next_write();
    let follow_up = event_in(&conversation, FOLLOW_UP, "Nog iets");
    let error = helpdesk.append(&ticket, &follow_up).await.expect_err("a lost answer is transient");
    assert!(
        matches!(error, HelpdeskError::Unavailable(_)),
        "a lost answer is transient: {error:?}"
    );

    let helpdesk = fake.adapter();
    if fake.answers_lookups() {
        assert!(helpdesk.has_event(&ticket, FOLLOW_UP).await.unwrap(), "the follow-up is found");
        assert!(!helpdesk.has_event(&ticket, "ffffffffffffffffffffffffffffffff").await.unwrap());
    } else {
        helpdesk
            .append(&ticket, &follow_up)
            .await
            .expect("the same event sent again is taken");
    }
    assert_eq!(fake.tickets(), 1);
}

/// The first call the router makes for an event: its lookup, or the delivery itself where the
/// destination cannot be asked.
async fn first_call(fake: &impl Fake, helpdesk: &dyn Helpdesk) -> Result<(), HelpdeskError> {
    let conversation = fake.conversation();
    if fake.answers_lookups() {
        helpdesk.find_ticket(&conversation).await.map(drop)
    } else {
        let opening = event_in(&conversation, OPENING, "x");
        helpdesk.create_ticket(&opening, &Routing::default()).await.map(drop)
    }
}

/// A server that reads the request and closes the connection; one that never answers in time.
pub async fn a_closed_connection_or_no_answer_is_transient(fake: &impl Fake) {
    let helpdesk = fake.adapter_at(&closing_server().await);
    let error = helpdesk
        .create_ticket(&event_in(&fake.conversation(), OPENING, "x"), &Routing::default())
        .await
        .expect_err("closed on create");
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "closed on create: {error:?}");
    let error = first_call(fake, &*helpdesk).await.expect_err("closed on find");
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "closed on find: {error:?}");

    let (silent, _) = serve(|_| Reply::Hang).await;
    let started = std::time::Instant::now();
    let error = first_call(fake, &*fake.adapter_at(&silent)).await.expect_err("no answer");
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "no answer: {error:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
}

/// 429, 5xx, 403 and 422 on the first call of a creation or a lookup; nothing is created.
pub async fn statuses_map_to_retry_operator_or_dead_letter(fake: &impl Fake) {
    let helpdesk = fake.adapter();
    let opening = event_in(&fake.conversation(), OPENING, "Siparişim nerede?");
    fake.fail_next_call(Failure {
        status: 429,
        headers: &[("retry-after", "7"), ("content-type", "application/json")],
        body: r#"{"error":"too many requests"}"#,
    });
    let error = helpdesk
        .create_ticket(&opening, &Routing::default())
        .await
        .expect_err("429 with Retry-After");
    assert!(
        matches!(error, HelpdeskError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "429 with Retry-After: {error:?}"
    );

    for status in [500, 503] {
        fake.fail_next_call(Failure::json(status, r#"{"error":"internal error"}"#));
        let error = first_call(fake, &*helpdesk).await.expect_err("a 5xx is an error");
        assert!(matches!(error, HelpdeskError::Unavailable(_)), "{status}: {error:?}");
    }

    fake.fail_next_call(Failure::json(403, r#"{"error":"forbidden"}"#));
    let error = helpdesk.create_ticket(&opening, &Routing::default()).await.expect_err("403");
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "403: {error:?}");
    assert!(error.is_transient(), "an operator can fix it: never dead-lettered");

    fake.fail_next_call(Failure::json(422, r#"{"error":"the kit's invalid record"}"#));
    let error = helpdesk.create_ticket(&opening, &Routing::default()).await.expect_err("422");
    assert!(
        matches!(error, HelpdeskError::Rejected { status: 422, ref detail } if detail.contains("the kit's invalid record")),
        "422: {error:?}"
    );
    assert!(!error.is_transient(), "a refused event is dead-lettered");
    assert_eq!(fake.tickets(), 0, "no failure created a ticket");
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl Call {
    /// The body as JSON; panics (failing the test) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a json body")
    }

    /// A header's value, empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The query parameters, decoded, in order.
    pub fn params(&self) -> Vec<(String, String)> {
        reqwest::Url::parse(&format!("http://stub/?{}", self.query))
            .expect("query")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// One query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Checks a JSON API call's method, path and credentials (and content type, for a POST).
pub fn assert_api_call(call: &Call, method: &str, path: &str, authorization: &str) {
    assert_eq!(call.method, method);
    assert_eq!(call.path, path);
    assert_eq!(call.header("authorization"), authorization);
    if method == "POST" {
        assert_eq!(call.header("content-type"), "application/json");
    }
}

/// The answer to a write a fake has stored: `201` with `stored`, or none at all (past the
/// adapter's timeout) when `lose` was set, which it clears.
pub fn stored(lose: &mut bool, stored: serde_json::Value) -> Reply {
    if std::mem::take(lose) {
        Reply::Hang
    } else {
        Reply::Json(201, stored)
    }
}

/// A fake's answer.
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, serde_json::Value),
    /// Never answers (past the adapter's timeout): the response is lost.
    Hang,
}

type Respond = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Stub {
    calls: Arc<Mutex<Vec<Call>>>,
    fail_next: Arc<Mutex<Option<Failure>>>,
    respond: Respond,
}

/// The calls a fake received, in order.
pub type Calls = Arc<Mutex<Vec<Call>>>;

/// A fake running on 127.0.0.1.
pub struct Served {
    /// Its base URL.
    pub url: String,
    /// The calls it received.
    pub calls: Arc<Mutex<Vec<Call>>>,
    fail_next: Arc<Mutex<Option<Failure>>>,
}

impl Served {
    /// The next call is answered with `failure` instead of reaching the fake.
    pub fn fail_next_call(&self, failure: Failure) {
        *self.fail_next.lock().unwrap() = Some(failure);
    }
}

async fn handle(State(stub): State<Stub>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    stub.calls.lock().unwrap().push(call.clone());
    let failure = stub.fail_next.lock().unwrap().take();
    if let Some(failure) = failure {
        return failure.response();
    }
    match (stub.respond)(&call) {
        Reply::Json(status, value) => (StatusCode::from_u16(status).unwrap(), axum::Json(value)).into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
    }
}

fn raw_response(status: u16, headers: &[(&'static str, &'static str)], body: &'static str) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

/// Serves `respond` on 127.0.0.1.
pub async fn start(respond: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stub = Stub {
        calls: Arc::default(),
        fail_next: Arc::default(),
        respond: Arc::new(respond),
    };
    let served = Served {
        url: format!("http://{addr}"),
        calls: stub.calls.clone(),
        fail_next: stub.fail_next.clone(),
    };
    let app = axum::Router::new().fallback(handle).with_state(stub);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    served
}

/// Serves `respond` on 127.0.0.1; the base URL and the calls received.
pub async fn serve(respond: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Call>>>) {
    let served = start(respond).await;
    (served.url, served.calls)
}

/// A server that reads the request and closes the connection without answering.
pub async fn closing_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
        }
    });
    format!("http://{addr}")
}

/// The kit fails an adapter that breaks the contract.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::helpdesk::{FoundTicket, TicketRef};

    /// Opens tickets but records nothing to find them by, and ignores every misbehaviour.
    #[derive(Default)]
    struct Forgetful(Arc<AtomicUsize>);

    #[async_trait]
    impl Helpdesk for Forgetful {
        async fn check(&self) -> Result<(), HelpdeskError> {
            Ok(())
        }

        async fn find_ticket(&self, _: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
            Ok(None)
        }

        async fn has_event(&self, _: &TicketRef, _: &str) -> Result<bool, HelpdeskError> {
            Ok(false)
        }

        async fn create_ticket(&self, _: &ConversationEvent, _: &Routing) -> Result<TicketRef, HelpdeskError> {
            let id = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(TicketRef {
                id: id.to_string(),
                url: String::new(),
            })
        }

        async fn append(&self, _: &TicketRef, _: &ConversationEvent) -> Result<(), HelpdeskError> {
            Ok(())
        }
    }

    impl Fake for Forgetful {
        fn adapter(&self) -> Box<dyn Helpdesk> {
            Box::new(Forgetful(self.0.clone()))
        }

        fn adapter_at(&self, _: &str) -> Box<dyn Helpdesk> {
            self.adapter()
        }

        fn lose_next_write(&self) {}

        fn fail_next_call(&self, _: Failure) {}

        fn tickets(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    #[should_panic(expected = "a lost answer is transient")]
    async fn a_helpdesk_that_answers_every_create_fails_the_lost_answer_scenario() {
        a_create_whose_answer_was_lost_is_found_by_its_origin_event(&Forgetful::default()).await;
    }

    #[tokio::test]
    #[should_panic(expected = "closed on create")]
    async fn a_helpdesk_that_ignores_its_connection_fails_the_transport_scenario() {
        a_closed_connection_or_no_answer_is_transient(&Forgetful::default()).await;
    }

    #[tokio::test]
    #[should_panic(expected = "429 with Retry-After")]
    async fn a_helpdesk_that_ignores_statuses_fails_the_status_scenario() {
        statuses_map_to_retry_operator_or_dead_letter(&Forgetful::default()).await;
    }
}
