//! A Zendesk-shaped helpdesk for end-to-end tests: Zendesk itself cannot run here, so this
//! in-process server answers the requests omni's Zendesk adapter makes, in the shapes Zendesk's
//! Ticketing API reference documents, and checks what that reference requires of them:
//!
//! - auth: `Authorization: Basic base64("<email>/token:<api_token>")` on every request
//!   (<https://developer.zendesk.com/api-reference/introduction/security-and-auth/>);
//! - `GET /api/v2/users/me` -> `{"user": {"id", "role"}}`;
//! - `POST /api/v2/tickets` with `{"ticket": {"subject", "comment": {"body", "public"},
//!   "requester": {"name", "email"}, "external_id", "metadata"}}` and an `Idempotency-Key`
//!   header (required here): 201 `{"ticket": {...}, "audit": {...}}`; the same key again with the
//!   same body answers the first ticket with `x-idempotency-lookup: hit`
//!   (<https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#create-ticket>,
//!   "Idempotency" in the Ticketing API introduction);
//! - `GET /api/v2/tickets?external_id=` -> `{"tickets": [...], "count"}`;
//! - `GET /api/v2/tickets/{id}` -> `{"ticket": {"id", "requester_id", "status"}}`;
//! - `PUT /api/v2/tickets/{id}` with `{"ticket": {"comment": {...}, "metadata": {...}}}`;
//! - `GET /api/v2/tickets/{id}/audits?page[size]=` -> `{"audits": [{"metadata": {"custom": {...}}}],
//!   "meta": {"has_more", "after_cursor"}}` (cursor pagination);
//! - `POST /api/v2/uploads?filename=` with the file as the body and its own Content-Type ->
//!   201 `{"upload": {"token", "attachment", "attachments"}}`; a comment's `uploads` must name
//!   tokens it issued
//!   (<https://developer.zendesk.com/api-reference/ticketing/tickets/ticket-attachments/#upload-files>).
//!
//! It misbehaves on cue ([`Mode`]): 429 with `Retry-After`, 500, or 503 for everything, as
//! Zendesk does when rate-limiting, failing or down, or carries writes out and loses the answer;
//! and answers slowly on cue
//! ([`Zendesk::set_delay`]), or holds the writes carrying a given text until released
//! ([`Zendesk::hold_writes_containing`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Normally.
    Healthy = 0,
    /// 429 with `Retry-After: 1` to everything.
    RateLimited = 1,
    /// 500 to everything.
    Failing = 2,
    /// 503 to everything (down for maintenance).
    Down = 3,
    /// Writes (create, update, upload) are carried out, then answered 500: the answer is lost,
    /// as when a proxy or the network fails after Zendesk did the work. Reads answer normally.
    ApplyThenFail = 4,
}

/// One ticket as the server keeps it.
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
    pub arrived: Vec<std::time::SystemTime>,
    /// The files (name, bytes) each comment carries (its `uploads`), oldest first.
    pub files: Vec<Vec<(String, usize)>>,
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Ticket>,
    idempotency: HashMap<String, (u64, Value)>,
    uploads: Vec<(String, usize)>,
    requests: u64,
    refused: u64,
    violations: Vec<String>,
}

/// The server's state, shared with the test.
#[derive(Clone, Default)]
pub struct Zendesk {
    mode: Arc<AtomicU8>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    inner: Arc<Mutex<Inner>>,
    auth: Arc<String>,
    /// Writes whose body contains this text wait until it is cleared.
    hold: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Zendesk {
    /// Starts a server on a free loopback port accepting `email` / `api_token`; returns it and its base URL.
    pub async fn start(email: &str, api_token: &str) -> anyhow::Result<(Zendesk, String)> {
        use base64::Engine as _;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{email}/token:{api_token}"));
        let server = Zendesk {
            auth: Arc::new(format!("Basic {credentials}")),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/api/v2/users/me", axum::routing::get(me))
            .route("/api/v2/tickets", axum::routing::get(list).post(create))
            .route("/api/v2/tickets/{id}", axum::routing::get(show).put(update))
            .route("/api/v2/tickets/{id}/audits", axum::routing::get(audits))
            .route("/api/v2/uploads", axum::routing::post(upload))
            .layer(axum::extract::DefaultBodyLimit::max(50 * 1024 * 1024))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((server, url))
    }

    /// Switches how the server answers.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Answers every request only after `delay` (a slow helpdesk); zero for none.
    pub fn set_delay(&self, delay: std::time::Duration) {
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

    async fn wait_if_held(&self, body: &[u8]) {
        let mut held = self.hold.subscribe();
        let free = |hold: &Option<String>| {
            hold.as_ref()
                .is_none_or(|text| !body.windows(text.len().max(1)).any(|window| window == text.as_bytes()))
        };
        let _ = held.wait_for(free).await;
    }

    async fn slow_down(&self) {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
    }

    /// (file name, size) of every upload.
    pub fn uploads(&self) -> Vec<(String, usize)> {
        self.inner.lock().unwrap().uploads.clone()
    }

    /// Every ticket, by id.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.inner.lock().unwrap().tickets.values().cloned().collect()
    }

    /// (requests answered normally, requests refused by the current mode).
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.requests, inner.refused)
    }

    /// Requests that broke the documented contract (bad auth, missing idempotency key, body shape).
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// The answer when misbehaving or unauthorized, else `None`.
    fn gate(&self, headers: &HeaderMap, what: &str) -> Option<Response> {
        let mut inner = self.inner.lock().unwrap();
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(self.auth.as_str()) {
            inner.violations.push(format!("{what}: wrong or missing basic auth"));
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        let refused = match self.mode.load(Ordering::SeqCst) {
            1 => Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "Rate limit exceeded").into_response()),
            2 => Some((StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"InternalError\"}").into_response()),
            3 => Some((StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "Maintenance").into_response()),
            _ => None,
        };
        match refused {
            Some(response) => {
                inner.refused += 1;
                Some(response)
            }
            None => {
                inner.requests += 1;
                None
            }
        }
    }

    /// The answer to a write that was carried out: `answer`, or a 500 in [`Mode::ApplyThenFail`].
    fn answer_write(&self, answer: Response) -> Response {
        if self.mode.load(Ordering::SeqCst) == Mode::ApplyThenFail as u8 {
            self.inner.lock().unwrap().refused += 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"InternalError\"}").into_response();
        }
        answer
    }

    fn violation(&self, what: String) -> Response {
        self.inner.lock().unwrap().violations.push(what.clone());
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({ "error": "RecordInvalid", "description": what })),
        )
            .into_response()
    }
}

/// The files (name, bytes) of a comment's `uploads` (tokens this server issued as `upload<N>`).
fn upload_files(inner: &Inner, comment: &Value) -> Vec<(String, usize)> {
    let tokens = comment.get("uploads").and_then(Value::as_array).cloned().unwrap_or_default();
    tokens
        .iter()
        .filter_map(|token| token.as_str()?.strip_prefix("upload")?.parse::<usize>().ok())
        .filter_map(|n| inner.uploads.get(n.checked_sub(1)?).cloned())
        .collect()
}

/// A comment's `uploads` token that this server did not issue, if any.
fn unknown_upload(inner: &Inner, comment: &Value) -> Option<String> {
    let tokens = comment.get("uploads")?.as_array()?;
    tokens.iter().find_map(|token| {
        let issued = token
            .as_str()
            .and_then(|t| t.strip_prefix("upload"))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (1..=inner.uploads.len()).contains(&n));
        (!issued).then(|| format!("unknown upload token {token}"))
    })
}

fn ticket_json(ticket: &Ticket) -> Value {
    json!({
        "id": ticket.id,
        "url": format!("https://example.zendesk.com/api/v2/tickets/{}.json", ticket.id),
        "external_id": ticket.external_id,
        "requester_id": 1000 + ticket.id,
        "status": "open",
        "description": ticket.comments.first().cloned().unwrap_or_default(),
    })
}

async fn me(State(server): State<Zendesk>, headers: HeaderMap) -> Response {
    server.slow_down().await;
    if let Some(refused) = server.gate(&headers, "GET /users/me") {
        return refused;
    }
    axum::Json(json!({ "user": { "id": 1, "name": "omni", "role": "admin" } })).into_response()
}

async fn list(State(server): State<Zendesk>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    server.slow_down().await;
    if let Some(refused) = server.gate(&headers, "GET /tickets") {
        return refused;
    }
    let Some(external_id) = query.get("external_id") else {
        return server.violation("GET /tickets without external_id".into());
    };
    let inner = server.inner.lock().unwrap();
    let found: Vec<Value> = inner
        .tickets
        .values()
        .filter(|t| &t.external_id == external_id)
        .map(ticket_json)
        .collect();
    axum::Json(json!({ "tickets": found, "count": found.len(), "next_page": null, "previous_page": null })).into_response()
}

async fn create(State(server): State<Zendesk>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    server.slow_down().await;
    server.wait_if_held(&body).await;
    if let Some(refused) = server.gate(&headers, "POST /tickets") {
        return refused;
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return server.violation(format!("{method} /tickets without Idempotency-Key"));
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return server.violation("POST /tickets: body is not JSON".into());
    };
    let ticket = &request["ticket"];
    let (Some(subject), Some(comment), Some(email), Some(external_id)) = (
        ticket["subject"].as_str(),
        ticket["comment"]["body"].as_str(),
        ticket["requester"]["email"].as_str(),
        ticket["external_id"].as_str(),
    ) else {
        return server.violation(format!(
            "POST /tickets: missing subject, comment.body, requester.email or external_id: {request}"
        ));
    };
    let _ = subject;
    let mut inner = server.inner.lock().unwrap();
    if let Some(problem) = unknown_upload(&inner, &ticket["comment"]) {
        drop(inner);
        return server.violation(format!("POST /tickets: {problem}"));
    }
    if let Some((id, first_body)) = inner.idempotency.get(&key).cloned() {
        if first_body != request {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": "IdempotentRequestError", "description": "key used with another body" })),
            )
                .into_response();
        }
        let ticket = inner.tickets[&id].clone();
        return (
            StatusCode::CREATED,
            [("x-idempotency-lookup", "hit")],
            axum::Json(json!({ "ticket": ticket_json(&ticket), "audit": { "metadata": { "custom": ticket.audits[0] } } })),
        )
            .into_response();
    }
    let id = inner.tickets.len() as u64 + 1;
    let ticket = Ticket {
        id,
        external_id: external_id.to_owned(),
        requester: email.to_owned(),
        comments: vec![comment.to_owned()],
        audits: vec![request["ticket"]["metadata"].clone()],
        arrived: vec![std::time::SystemTime::now()],
        files: vec![upload_files(&inner, &ticket["comment"])],
    };
    let answer = json!({ "ticket": ticket_json(&ticket), "audit": { "id": id * 1000, "metadata": { "custom": ticket.audits[0] } } });
    inner.tickets.insert(id, ticket);
    inner.idempotency.insert(key, (id, request));
    drop(inner);
    server.answer_write((StatusCode::CREATED, axum::Json(answer)).into_response())
}

async fn show(State(server): State<Zendesk>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    server.slow_down().await;
    if let Some(refused) = server.gate(&headers, "GET /tickets/{id}") {
        return refused;
    }
    let inner = server.inner.lock().unwrap();
    match inner.tickets.get(&id) {
        Some(ticket) => axum::Json(json!({ "ticket": ticket_json(ticket) })).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "RecordNotFound" }))).into_response(),
    }
}

async fn update(State(server): State<Zendesk>, headers: HeaderMap, Path(id): Path<u64>, body: Bytes) -> Response {
    server.slow_down().await;
    server.wait_if_held(&body).await;
    if let Some(refused) = server.gate(&headers, "PUT /tickets/{id}") {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return server.violation("PUT /tickets/{id}: body is not JSON".into());
    };
    let Some(comment) = request["ticket"]["comment"]["body"].as_str() else {
        return server.violation(format!("PUT /tickets/{id}: no ticket.comment.body: {request}"));
    };
    let mut inner = server.inner.lock().unwrap();
    if let Some(problem) = unknown_upload(&inner, &request["ticket"]["comment"]) {
        drop(inner);
        return server.violation(format!("PUT /tickets/{id}: {problem}"));
    }
    let files = upload_files(&inner, &request["ticket"]["comment"]);
    let Some(ticket) = inner.tickets.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "RecordNotFound" }))).into_response();
    };
    ticket.files.push(files);
    ticket.comments.push(comment.to_owned());
    ticket.arrived.push(std::time::SystemTime::now());
    ticket.audits.push(request["ticket"]["metadata"].clone());
    let answer = json!({ "ticket": ticket_json(ticket), "audit": { "metadata": { "custom": request["ticket"]["metadata"] } } });
    drop(inner);
    server.answer_write(axum::Json(answer).into_response())
}

async fn audits(
    State(server): State<Zendesk>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    server.slow_down().await;
    if let Some(refused) = server.gate(&headers, "GET /tickets/{id}/audits") {
        return refused;
    }
    let size: usize = query.get("page[size]").and_then(|s| s.parse().ok()).unwrap_or(100);
    let after: usize = query.get("page[after]").and_then(|s| s.parse().ok()).unwrap_or(0);
    let inner = server.inner.lock().unwrap();
    let Some(ticket) = inner.tickets.get(&id) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "RecordNotFound" }))).into_response();
    };
    let page: Vec<Value> = ticket
        .audits
        .iter()
        .enumerate()
        .skip(after)
        .take(size)
        .map(|(n, custom)| json!({ "id": n, "ticket_id": id, "metadata": { "custom": custom } }))
        .collect();
    let has_more = after + size < ticket.audits.len();
    axum::Json(json!({
        "audits": page,
        "meta": { "has_more": has_more, "after_cursor": has_more.then(|| (after + size).to_string()) },
    }))
    .into_response()
}

async fn upload(State(server): State<Zendesk>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>, body: Bytes) -> Response {
    server.slow_down().await;
    if let Some(refused) = server.gate(&headers, "POST /uploads") {
        return refused;
    }
    let Some(filename) = query.get("filename").filter(|f| !f.is_empty()) else {
        return server.violation("POST /uploads without filename".into());
    };
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.is_empty() || content_type.starts_with("application/json") {
        return server.violation(format!("POST /uploads: the file's own Content-Type expected, got `{content_type}`"));
    }
    let mut inner = server.inner.lock().unwrap();
    inner.uploads.push((filename.clone(), body.len()));
    let n = inner.uploads.len();
    let attachment = json!({
        "id": 498_483 + n,
        "file_name": filename,
        "content_type": content_type,
        "size": body.len(),
        "content_url": format!("https://example.zendesk.com/attachments/token/upload{n}/?name={filename}"),
    });
    drop(inner);
    server.answer_write(
        (
            StatusCode::CREATED,
            axum::Json(json!({ "upload": { "token": format!("upload{n}"), "attachment": attachment, "attachments": [attachment] } })),
        )
            .into_response(),
    )
}
