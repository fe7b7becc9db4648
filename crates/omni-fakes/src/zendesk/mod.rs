//! A fake of Zendesk's Ticketing API v2. Zendesk itself cannot run in a test, so this in-process
//! server answers the requests omni's Zendesk adapter makes, in the shapes Zendesk's published
//! reference documents, and checks what that reference requires of them. The router's unit tests
//! (`omni-router`, `helpdesk/zendesk/tests.rs`) and the end-to-end harness (`omni_e2e::zendesk`)
//! both run against it.
//!
//! What it answers and checks, by reference page:
//!
//! - Security and authentication: an API token as basic auth
//!   `Authorization: Basic base64("{email_address}/token:{api_token}")` on every request, or an
//!   OAuth access token as `Authorization: Bearer` ([`Zendesk::accept_oauth_token`]):
//!   <https://developer.zendesk.com/api-reference/introduction/security-and-auth/>
//! - Requests (`Accept: application/json` on all requests, `Content-Type: application/json` on
//!   PUT and POST; 401 `Couldn't authenticate you`; 422 `RecordInvalid` with `details`):
//!   <https://developer.zendesk.com/api-reference/introduction/requests/>
//! - Users (Show the Currently Authenticated User `GET /api/v2/users/me` -> `{"user": {"id",
//!   "role"}}`, allowed for anonymous users; `role` is `end-user`, `agent` or `admin`), Groups
//!   (`GET /api/v2/groups/{group_id}`, `GET /api/v2/groups`), Ticket Fields
//!   (`GET /api/v2/ticket_fields`, `title`):
//!   <https://developer.zendesk.com/api-reference/ticketing/users/users/>,
//!   <https://developer.zendesk.com/api-reference/ticketing/groups/groups/>,
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_fields/>
//! - Tickets (JSON format: `external_id`, `metadata`, `priority` values, `custom_fields`,
//!   `group_id`, `requester`; List Tickets `GET /api/v2/tickets?external_id=` -> `{"tickets":
//!   [...], "count"}`; Show Ticket `GET /api/v2/tickets/{ticket_id}` -> `{"ticket": {"id",
//!   "requester_id", "status"}}`; Update Ticket `PUT /api/v2/tickets/{ticket_id}` with
//!   `{"ticket": {"comment": {...}, "metadata": {...}}}` answering 200):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/>
//! - Create Ticket `POST /api/v2/tickets` with `{"ticket": {"subject", "comment": {"body",
//!   "public"}, "requester": {"name", "email"}, "external_id", "metadata"}}` and an
//!   `Idempotency-Key` header (required here), answering 201 `{"ticket", "audit"}`:
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#create-ticket>
//! - Idempotency ("Idempotency" in the Ticketing API introduction: `Idempotency-Key` on ticket
//!   creation, `x-idempotency-lookup: miss|hit`, the cached response for the same body and key
//!   (Zendesk keeps a key two hours; the fake keeps it for its life), 400
//!   `IdempotentRequestError` "Request parameters don't match
//!   the given idempotency key" for the same key with another body):
//!   <https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency>
//! - Setting metadata (up to 1 KB of custom metadata on the audit an update creates, read back
//!   as `audit.metadata.custom`):
//!   <https://developer.zendesk.com/documentation/ticketing/managing-tickets/creating-and-updating-tickets/#setting-metadata>
//! - Ticket Audits (List Audits for a Ticket `GET /api/v2/tickets/{ticket_id}/audits`, oldest
//!   first, cursor pagination `page[size]`/`page[after]` with `meta.has_more` and
//!   `meta.after_cursor`):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/>,
//!   <https://developer.zendesk.com/api-reference/introduction/pagination/>
//! - Ticket Comments (`author_id`: shown as the author, the API user stays the updater;
//!   `public: false` is an internal note; `uploads` tokens):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/>
//! - Attachments (Upload Files `POST /api/v2/uploads?filename=` with the file as the body and its
//!   own Content-Type, answering 201 `{"upload": {"token", "attachment", "attachments"}}`; a
//!   comment's `uploads` must name tokens this server issued):
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket-attachments/>,
//!   <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket-attachments/#upload-files>
//! - Rate limits (429 with `Retry-After`, Zendesk's example body in text; `ratelimit-remaining`
//!   on every answer):
//!   <https://developer.zendesk.com/api-reference/introduction/rate-limits/>,
//!   <https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/best-practices-for-avoiding-rate-limiting/>
//!
//! A request off that contract is answered 418 `StubRefused` with why (a status Zendesk never
//! gives, so no adapter mistakes it for one of Zendesk's refusals) and kept in
//! [`Zendesk::violations`], as are requests with wrong or missing credentials: a unit test sees
//! the adapter fail, an end-to-end test finds the list not empty.
//!
//! It misbehaves on cue: for everything ([`Mode`]: 429 with `Retry-After`, 500, 503, or writes
//! carried out and their answers lost), for the next request of a method and path ([`Cue`]), for
//! the next request at all ([`Zendesk::fail_next_call`]) or the next write
//! ([`Zendesk::lose_next_write`]); and it answers slowly on cue ([`Zendesk::set_delay`]), or holds
//! the writes carrying a given text until released ([`Zendesk::hold_writes_containing`]).
//!
//! Its fixed data: the groups 359 `Billing` and [`GROUP_ID`] `Tier 1`, the ticket fields 1
//! `Subject` and [`FIELD_ID`] `Country`, every ticket requested by [`REQUESTER_ID`], ticket ids
//! from [`FIRST_TICKET`] on, upload tokens `tok1`, `tok2`, ... and audit cursors `c<offset>`.

mod api;
mod state;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use serde_json::Value;

use state::State;

/// The group the fake knows (`Tier 1`), by id and by name.
pub const GROUP_ID: u64 = 360;
/// The ticket field the fake knows besides `Subject` (`Country`, a text field).
pub const FIELD_ID: u64 = 360001;
/// The requester of every ticket, as Show Ticket answers it.
pub const REQUESTER_ID: u64 = 20978392;
/// The id of the first ticket; the next ones count on from it.
pub const FIRST_TICKET: u64 = 35436;
/// How long a lost answer keeps the client waiting: past any adapter's timeout.
const LOST_ANSWER: Duration = Duration::from_secs(10);
/// The largest request body taken (uploads).
const MAX_BODY: usize = 50 * 1024 * 1024;

/// How the server answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Normally.
    #[default]
    Healthy,
    /// 429 with `Retry-After: 1` to everything.
    RateLimited,
    /// 500 to everything.
    Failing,
    /// 503 to everything (down for maintenance).
    Down,
    /// Writes (create, update, upload) are carried out, then answered 500: the answer is lost,
    /// as when a proxy or the network fails after Zendesk did the work. Reads answer normally.
    ApplyThenFail,
}

/// A misbehaviour for the next request of a method and path ([`Zendesk::cue`]).
#[derive(Clone, Copy, Debug)]
pub enum Cue {
    /// Does the work, then no answer: the response is lost.
    LoseResponse,
    /// 422 `RecordInvalid`, as Requests documents it; nothing is done.
    Invalid,
}

/// One ticket as the tests read it.
#[derive(Clone, Debug, Default)]
pub struct Ticket {
    /// Zendesk's id.
    pub id: u64,
    /// The conversation id omni put there.
    pub external_id: String,
    /// The requester's address.
    pub requester: String,
    /// Comment bodies, oldest first (the first is the ticket's description).
    pub comments: Vec<String>,
    /// Each audit's `metadata.custom`, oldest first.
    pub audits: Vec<Value>,
    /// When each comment arrived, oldest first.
    pub arrived: Vec<SystemTime>,
    /// The files (name, bytes) each comment carries (its `uploads`), oldest first.
    pub files: Vec<Vec<(String, usize)>>,
}

/// One request the fake received (kept after [`Zendesk::record_calls`]).
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl Call {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; `null` when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The query parameters, borrowed.
    pub fn query_pairs(&self) -> Vec<(&str, &str)> {
        self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// One query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether it creates or updates a ticket (what [`Zendesk::hold_writes_containing`] holds).
    fn is_ticket_write(&self) -> bool {
        let ticket = self.path.strip_prefix("/api/v2/tickets/");
        (self.method == "POST" && self.path == "/api/v2/tickets") || (self.method == "PUT" && ticket.is_some_and(|id| !id.contains('/')))
    }
}

/// The server's state, shared with the test.
#[derive(Clone)]
pub struct Zendesk {
    state: Arc<Mutex<State>>,
    delay_ms: Arc<AtomicU64>,
    /// Writes whose body contains this text wait until it is cleared.
    hold: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Zendesk {
    /// Starts a server on a free loopback port accepting `email` / `api_token` as basic auth;
    /// returns it and its base URL.
    pub async fn start(email: &str, api_token: &str) -> std::io::Result<(Zendesk, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{email}/token:{api_token}"));
        let state = State {
            base: url.clone(),
            email: email.to_owned(),
            credentials: vec![format!("Basic {credentials}")],
            role: "admin".into(),
            ..State::default()
        };
        let server = Zendesk {
            state: Arc::new(Mutex::new(state)),
            delay_ms: Arc::default(),
            hold: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(api::handle)
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((server, url))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Accepts `token` as an OAuth access token (`Authorization: Bearer`) too.
    pub fn accept_oauth_token(&self, token: &str) {
        self.state().credentials.push(format!("Bearer {token}"));
    }

    /// Keeps every request from now on, for [`calls`](Self::calls) (unit tests; a benchmark's
    /// millions of requests would not fit).
    pub fn record_calls(&self) {
        self.state().calls.get_or_insert_default();
    }

    /// The requests kept so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone().unwrap_or_default()
    }

    /// The requests kept so far, oldest first; keeps recording from none.
    pub fn take_calls(&self) -> Vec<Call> {
        self.state().calls.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Switches how the server answers.
    pub fn set_mode(&self, mode: Mode) {
        self.state().mode = mode;
    }

    /// Answers every request only after `delay` (a slow helpdesk); zero for none.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Makes every write (create, update) whose body contains `text` wait until
    /// [`release`](Self::release): a helpdesk stuck on one conversation.
    pub fn hold_writes_containing(&self, text: &str) {
        self.hold.send_replace(Some(text.to_owned()));
    }

    /// Lets the held writes through.
    pub fn release(&self) {
        self.hold.send_replace(None);
    }

    /// The next request of `method` and `path` misbehaves as `cue` says.
    pub fn cue(&self, method: &str, path: &str, cue: Cue) {
        self.state().cues.push_back((method.into(), path.into(), cue));
    }

    /// The next request, whatever it is, is answered with `answer` and changes nothing.
    pub fn fail_next_call(&self, answer: Response) {
        self.state().fail_next = Some(answer);
    }

    /// The next write (any request but a GET) is carried out, but its answer never comes.
    pub fn lose_next_write(&self) {
        self.state().lose_next_write = true;
    }

    /// Makes the authenticated user's role `role` (`end-user`, `agent` or `admin`, the default).
    pub fn set_role(&self, role: &str) {
        self.state().role = role.to_owned();
    }

    /// Sets a ticket's status, as an agent would (`solved`, ...).
    pub fn set_status(&self, ticket: u64, status: &str) {
        self.state().tickets.get_mut(&ticket).expect("a ticket of this fake").json["status"] = status.into();
    }

    /// Adds an audit without a comment to a ticket, as triggers and agents do, with `custom` as
    /// its metadata.
    pub fn add_audit(&self, ticket: u64, custom: Value) {
        self.state().audit(ticket, custom, None);
    }

    /// A ticket's audits as List Audits answers them, oldest first; empty for an unknown ticket.
    pub fn audits(&self, ticket: u64) -> Vec<Value> {
        self.state().audits_json(ticket).unwrap_or_default()
    }

    /// (file name, size) of every upload.
    pub fn uploads(&self) -> Vec<(String, usize)> {
        self.state().uploads.clone()
    }

    /// Every ticket, by id.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.state().tickets.values().map(|stored| stored.view.clone()).collect()
    }

    /// (requests answered normally, requests refused by the current mode).
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.requests, state.refused)
    }

    /// Requests that broke the documented contract (bad auth, missing idempotency key, headers,
    /// body shape, unknown upload tokens).
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    async fn slow_down(&self) {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }

    async fn wait_if_held(&self, body: &[u8]) {
        let mut held = self.hold.subscribe();
        let free = |hold: &Option<String>| {
            hold.as_ref()
                .is_none_or(|text| !body.windows(text.len().max(1)).any(|window| window == text.as_bytes()))
        };
        let _ = held.wait_for(free).await;
    }
}
