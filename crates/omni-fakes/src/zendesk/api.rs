//! The requests: who asks, the documented headers, then one function an endpoint. Each names
//! the reference page it follows (the module docs list them all).

use axum::body::Bytes;
use axum::extract::{Query, State as Shared};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::{Cued, State};
use super::{Call, FIELD_ID, GROUP_ID, LOST_ANSWER, Zendesk};

/// Every request: kept, slowed, held, then misbehaved on cue or answered.
pub(super) async fn handle(
    Shared(zendesk): Shared<Zendesk>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        headers,
        body,
    };
    let cued = zendesk.state().take_cued(&call);
    zendesk.slow_down().await;
    if call.is_ticket_write() {
        zendesk.wait_if_held(&call.body).await;
    }
    let lose = match cued {
        Cued::Answer(answer) => return answer,
        Cued::LoseAnswer => true,
        Cued::Nothing => false,
    };
    let response = answer(&mut zendesk.state(), &call);
    if lose {
        tokio::time::sleep(LOST_ANSWER).await;
    }
    response
}

/// The answer to a request no cue took: credentials, the mode, the documented headers, then the
/// endpoint.
fn answer(state: &mut State, call: &Call) -> Response {
    if let Some(refused) = authenticate(state, call) {
        return refused;
    }
    if let Some(refused) = state.mode_refusal() {
        return refused;
    }
    if let Some(why) = header_problem(call) {
        return refuse(state, call, why);
    }
    endpoint(state, call)
}

/// `None` for accepted credentials; else the anonymous user for `GET /api/v2/users/me` without
/// any, 401 `Couldn't authenticate you` for the rest, and a violation either way: omni always
/// signs in. <https://developer.zendesk.com/api-reference/introduction/security-and-auth/>,
/// <https://developer.zendesk.com/api-reference/ticketing/users/users/>
fn authenticate(state: &mut State, call: &Call) -> Option<Response> {
    let auth = call.header("authorization");
    if auth.is_some_and(|auth| state.credentials.iter().any(|accepted| accepted == auth)) {
        return None;
    }
    let what = format!("{} {}: wrong or missing auth", call.method, call.path);
    state.violations.push(what);
    if call.path == "/api/v2/users/me" && auth.is_none() {
        let anonymous = json!({ "user": { "id": null, "name": "Anonymous user", "role": "end-user" } });
        return Some(reply(200, anonymous, &[]));
    }
    Some(reply(401, json!({ "error": "Couldn't authenticate you" }), &[]))
}

/// What a request's headers break of the reference, if anything: `Accept: application/json` on
/// all, `Content-Type: application/json` on PUT and POST but uploads
/// (<https://developer.zendesk.com/api-reference/introduction/requests/>), `Idempotency-Key` on
/// creation only (<https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency>).
fn header_problem(call: &Call) -> Option<&'static str> {
    if call.header("accept") != Some("application/json") {
        return Some("Accept: application/json is required on all requests");
    }
    let is_json_write = matches!(call.method.as_str(), "POST" | "PUT") && call.path != "/api/v2/uploads";
    if is_json_write && call.header("content-type") != Some("application/json") {
        return Some("Content-Type: application/json is required on PUT and POST");
    }
    if call.method != "POST" && call.header("idempotency-key").is_some() {
        return Some("Idempotency-Key is for ticket creation");
    }
    None
}

/// The endpoint's answer.
fn endpoint(state: &mut State, call: &Call) -> Response {
    let segments: Vec<&str> = call.path.trim_start_matches("/api/v2/").split('/').collect();
    match (call.method.as_str(), segments.as_slice()) {
        ("GET", ["users", "me"]) => me(state),
        ("GET", ["groups", id]) => group(id),
        ("GET", ["groups"]) => cursor_page(call, "groups", groups()),
        ("GET", ["ticket_fields"]) => cursor_page(call, "ticket_fields", ticket_fields()),
        ("GET", ["tickets"]) => list(state, call),
        ("GET", ["tickets", id]) => show(state, id),
        ("GET", ["tickets", id, "audits"]) => audits(state, call, id),
        ("POST", ["uploads"]) => upload(state, call),
        ("POST", ["tickets"]) => create(state, call),
        ("PUT", ["tickets", id]) => update(state, call, id),
        _ => reply(404, json!({ "error": "InvalidEndpoint", "description": "Not found" }), &[]),
    }
}

/// A JSON answer, with the `ratelimit-remaining` header Zendesk puts on every answer
/// (<https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/best-practices-for-avoiding-rate-limiting/>).
fn reply(status: u16, body: Value, headers: &[(&str, &str)]) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    response.headers_mut().insert("ratelimit-remaining", "699".parse().unwrap());
    response
}

fn not_found() -> Response {
    reply(404, json!({ "error": "RecordNotFound", "description": "Not found" }), &[])
}

/// 422 `RecordInvalid` with `details`, as Requests documents it
/// (<https://developer.zendesk.com/api-reference/introduction/requests/>).
pub(super) fn record_invalid() -> Response {
    let details = json!({ "base": [{ "description": "Requester: Email is invalid", "error": "InvalidValue" }] });
    let body = json!({ "error": "RecordInvalid", "description": "Record validation errors", "details": details });
    reply(422, body, &[])
}

/// A request the reference does not allow: kept as a violation and answered 418, so the adapter
/// fails and the test says why.
fn refuse(state: &mut State, call: &Call, why: impl std::fmt::Display) -> Response {
    let what = format!("{} {}: {why}", call.method, call.path);
    state.violations.push(what.clone());
    reply(418, json!({ "error": "StubRefused", "description": what }), &[])
}

/// Show the Currently Authenticated User
/// (<https://developer.zendesk.com/api-reference/ticketing/users/users/>).
fn me(state: &State) -> Response {
    let user = json!({ "id": 1, "name": "omni", "email": state.email, "role": state.role });
    reply(200, json!({ "user": user }), &[])
}

/// Show Group (<https://developer.zendesk.com/api-reference/ticketing/groups/groups/>).
fn group(id: &str) -> Response {
    if id != GROUP_ID.to_string() {
        return not_found();
    }
    reply(200, json!({ "group": { "id": GROUP_ID, "name": "Tier 1" } }), &[])
}

/// List Groups (<https://developer.zendesk.com/api-reference/ticketing/groups/groups/>).
fn groups() -> Vec<Value> {
    vec![json!({ "id": 359, "name": "Billing" }), json!({ "id": GROUP_ID, "name": "Tier 1" })]
}

/// List Ticket Fields (<https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_fields/>).
fn ticket_fields() -> Vec<Value> {
    vec![
        json!({ "id": 1, "title": "Subject", "type": "subject" }),
        json!({ "id": FIELD_ID, "title": "Country", "type": "text" }),
    ]
}

/// A cursor-paginated list answer (`page[size]` up to 100, `page[after]`, `meta.has_more`,
/// `meta.after_cursor`, `links.next`)
/// (<https://developer.zendesk.com/api-reference/introduction/pagination/>).
fn cursor_page(call: &Call, key: &str, items: Vec<Value>) -> Response {
    let size: usize = call.param("page[size]").and_then(|s| s.parse().ok()).unwrap_or(100).min(100);
    let start: usize = call
        .param("page[after]")
        .and_then(|s| s.strip_prefix("c").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let end = (start + size).min(items.len());
    let has_more = end < items.len();
    let after_cursor = has_more.then(|| format!("c{end}"));
    let next = after_cursor.as_ref().map(|cursor| format!("{}?page[after]={cursor}", call.path));
    reply(
        200,
        json!({
            key: items[start.min(end)..end].to_vec(),
            "meta": { "has_more": has_more, "after_cursor": after_cursor, "before_cursor": format!("c{start}") },
            "links": { "next": next, "prev": null },
        }),
        &[],
    )
}

/// List Tickets by `external_id` (required here: omni never lists them all)
/// (<https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/>).
fn list(state: &mut State, call: &Call) -> Response {
    let Some(external_id) = call.param("external_id") else {
        return refuse(state, call, "no external_id");
    };
    let tickets: Vec<Value> = state
        .tickets
        .values()
        .filter(|stored| stored.json["external_id"] == external_id)
        .map(|stored| stored.json.clone())
        .collect();
    let count = tickets.len();
    reply(
        200,
        json!({ "tickets": tickets, "next_page": null, "previous_page": null, "count": count }),
        &[],
    )
}

/// Show Ticket (<https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/>).
fn show(state: &State, id: &str) -> Response {
    match id.parse::<u64>().ok().and_then(|id| state.tickets.get(&id)) {
        Some(stored) => reply(200, json!({ "ticket": stored.json }), &[]),
        None => not_found(),
    }
}

/// List Audits for a Ticket, oldest first, cursor-paginated
/// (<https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/>).
fn audits(state: &State, call: &Call, id: &str) -> Response {
    match id.parse::<u64>().ok().and_then(|id| state.audits_json(id)) {
        Some(audits) => cursor_page(call, "audits", audits),
        None => not_found(),
    }
}

/// Upload Files: `?filename=`, the file as the body with its own Content-Type; 201 with the
/// token `tok<N>` (<https://developer.zendesk.com/api-reference/ticketing/tickets/ticket-attachments/#upload-files>).
fn upload(state: &mut State, call: &Call) -> Response {
    let Some(filename) = call.param("filename").filter(|name| !name.is_empty()) else {
        return refuse(state, call, "filename is a required query parameter");
    };
    let content_type = call.header("content-type").unwrap_or_default();
    // JSON is what the API's other writes send: here only a .json file's own type.
    let json_not_a_json_file = content_type.starts_with("application/json") && !filename.ends_with(".json");
    if content_type.is_empty() || json_not_a_json_file {
        let why = format!("the Content-Type must describe the uploaded file, got `{content_type}`");
        return refuse(state, call, why);
    }
    state.uploads.push((filename.to_owned(), call.body.len()));
    let n = state.uploads.len();
    let token = format!("tok{n}");
    let attachment = json!({
        "id": 498483 + n,
        "file_name": filename,
        "content_url": format!("{}/attachments/token/{token}/?name={filename}", state.base),
        "content_type": content_type,
        "size": call.body.len(),
        "thumbnails": [],
    });
    let answer = json!({ "upload": { "token": token, "attachment": attachment, "attachments": [attachment] } });
    state.answer_write(reply(201, answer, &[]))
}

/// Create Ticket: an `Idempotency-Key`, a subject, `comment.body`, `requester.email`,
/// `external_id`, upload tokens this server issued; 201 `{"ticket", "audit"}` with
/// `x-idempotency-lookup: miss`
/// (<https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#create-ticket>).
fn create(state: &mut State, call: &Call) -> Response {
    let Some(key) = call.header("idempotency-key") else {
        return refuse(state, call, "no Idempotency-Key: omni always sends one when creating");
    };
    let Ok(request) = serde_json::from_slice::<Value>(&call.body) else {
        return refuse(state, call, "the body is not JSON");
    };
    if let Some(problem) = create_problem(state, &request["ticket"]) {
        return refuse(state, call, problem);
    }
    if let Some((first_body, id)) = state.keys.get(key) {
        return repeated_create(state, *id, *first_body == request);
    }
    let (id, answer) = state.create_ticket(&request);
    state.keys.insert(key.to_owned(), (request, id));
    let location = format!("{}/api/v2/tickets/{id}.json", state.base);
    let headers = [("x-idempotency-lookup", "miss"), ("location", location.as_str())];
    state.answer_write(reply(201, answer, &headers))
}

/// What a Create Ticket body's `ticket` lacks or names wrongly, if anything.
fn create_problem(state: &State, ticket: &Value) -> Option<String> {
    let required = [
        &ticket["subject"],
        &ticket["comment"]["body"],
        &ticket["requester"]["email"],
        &ticket["external_id"],
    ];
    if !required.iter().all(|value| value.is_string()) {
        return Some(format!("missing subject, comment.body, requester.email or external_id: {ticket}"));
    }
    state.unknown_upload(&ticket["comment"])
}

/// Create Ticket with a key used before: for the same body the first answer again, with
/// `x-idempotency-lookup: hit`; for another body 400 `IdempotentRequestError`
/// (<https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency>).
fn repeated_create(state: &State, id: u64, same_body: bool) -> Response {
    if !same_body {
        let why = "Request parameters don't match the given idempotency key";
        let refusal = json!({ "error": "IdempotentRequestError", "description": why });
        return reply(400, refusal, &[]);
    }
    let first_audit = state.first_audit_json(id).unwrap_or(Value::Null);
    let answer = json!({ "ticket": state.tickets[&id].json, "audit": first_audit });
    reply(201, answer, &[("x-idempotency-lookup", "hit")])
}

/// Update Ticket: a comment with a body and upload tokens this server issued, custom metadata
/// for the audit it makes, a status; 404 for a ticket this server does not hold
/// (<https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/>,
/// <https://developer.zendesk.com/documentation/ticketing/managing-tickets/creating-and-updating-tickets/#setting-metadata>).
fn update(state: &mut State, call: &Call, id: &str) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&call.body) else {
        return refuse(state, call, "the body is not JSON");
    };
    let update = &request["ticket"];
    if !update["comment"]["body"].is_string() {
        return refuse(state, call, format!("no ticket.comment.body: {request}"));
    }
    if let Some(problem) = state.unknown_upload(&update["comment"]) {
        return refuse(state, call, problem);
    }
    let Some(id) = id.parse::<u64>().ok().filter(|id| state.tickets.contains_key(id)) else {
        return not_found();
    };
    let answer = state.update_ticket(id, update);
    state.answer_write(reply(200, answer, &[]))
}
