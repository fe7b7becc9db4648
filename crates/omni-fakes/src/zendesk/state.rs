//! What the fake holds: tickets with their audits, idempotency keys, uploads, counts, and the
//! misbehaviours a test asked for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Call, Cue, FIRST_TICKET, Mode, REQUESTER_ID, Ticket};

/// The fake's state, behind its lock.
#[derive(Default)]
pub(super) struct State {
    /// The server's base URL, for the URLs it answers with.
    pub base: String,
    /// The agent's address, as `GET /users/me` shows it.
    pub email: String,
    /// The `Authorization` values accepted.
    pub credentials: Vec<String>,
    /// The authenticated user's role.
    pub role: String,
    pub mode: Mode,
    pub tickets: BTreeMap<u64, Stored>,
    /// Idempotency key: the create body it was first used with, and the ticket it made.
    pub keys: HashMap<String, (Value, u64)>,
    /// (file name, size) of every upload; the token `tok<N>` names the N-th.
    pub uploads: Vec<(String, usize)>,
    /// The last audit's id.
    pub next_audit: u64,
    /// Requests answered normally.
    pub requests: u64,
    /// Requests refused by the mode, and writes whose answer it lost.
    pub refused: u64,
    pub violations: Vec<String>,
    /// The requests received, once a test asked to keep them.
    pub calls: Option<Vec<Call>>,
    pub cues: VecDeque<(String, String, Cue)>,
    pub fail_next: Option<Response>,
    pub lose_next_write: bool,
}

/// One ticket: as Show Ticket answers it, its audits, and the tests' view of it.
pub(super) struct Stored {
    pub json: Value,
    /// Oldest first.
    pub audits: Vec<Audit>,
    pub view: Ticket,
}

/// One audit: the custom metadata of the write that made it, and the comment it added, if any.
pub(super) struct Audit {
    id: u64,
    custom: Value,
    comment: Option<Value>,
}

/// What a request meets before it reaches the API.
pub(super) enum Cued {
    /// Answered with this, nothing done.
    Answer(Response),
    /// Carried out, its answer lost.
    LoseAnswer,
    /// Nothing: answered as usual.
    Nothing,
}

impl State {
    /// Keeps `call` (when recording) and takes the one misbehaviour meant for it: a failure for
    /// the next call wins over a cue for its method and path, which wins over a lost write. Only
    /// the one applied is used up; the others wait for a later call.
    pub fn take_cued(&mut self, call: &Call) -> Cued {
        if let Some(calls) = &mut self.calls {
            calls.push(call.clone());
        }
        if let Some(answer) = self.fail_next.take() {
            return Cued::Answer(answer);
        }
        let cue = self.cues.iter().position(|(m, p, _)| *m == call.method && *p == call.path);
        match cue.and_then(|index| self.cues.remove(index)).map(|(_, _, cue)| cue) {
            Some(Cue::Invalid) => Cued::Answer(super::api::record_invalid()),
            Some(Cue::LoseResponse) => Cued::LoseAnswer,
            None if call.method != "GET" && std::mem::take(&mut self.lose_next_write) => Cued::LoseAnswer,
            None => Cued::Nothing,
        }
    }

    /// The answer when the mode refuses everything (counted), else `None` (counted too). Rate
    /// limits: <https://developer.zendesk.com/api-reference/introduction/rate-limits/>.
    pub fn mode_refusal(&mut self) -> Option<Response> {
        let refused = match self.mode {
            Mode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "Rate limit exceeded").into_response(),
            Mode::Failing => (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"InternalError\"}").into_response(),
            Mode::Down => (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "Maintenance").into_response(),
            Mode::Healthy | Mode::ApplyThenFail => {
                self.requests += 1;
                return None;
            }
        };
        self.refused += 1;
        Some(refused)
    }

    /// The answer to a write that was carried out: `answer`, or a 500 in [`Mode::ApplyThenFail`].
    pub fn answer_write(&mut self, answer: Response) -> Response {
        if self.mode == Mode::ApplyThenFail {
            self.refused += 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"InternalError\"}").into_response();
        }
        answer
    }

    /// Creates the ticket a Create Ticket body asks for, with its first audit; its id and the
    /// answer's `{"ticket", "audit"}`.
    pub fn create_ticket(&mut self, request: &Value) -> (u64, Value) {
        let input = &request["ticket"];
        let id = FIRST_TICKET + self.tickets.len() as u64;
        let view = Ticket {
            id,
            external_id: input["external_id"].as_str().unwrap_or_default().to_owned(),
            requester: input["requester"]["email"].as_str().unwrap_or_default().to_owned(),
            ..Ticket::default()
        };
        let json = ticket_json(&self.base, id, input);
        self.tickets.insert(
            id,
            Stored {
                json,
                audits: vec![],
                view,
            },
        );
        let custom = input.get("metadata").cloned().unwrap_or(json!({}));
        let audit = self.audit(id, custom, Some(&input["comment"]));
        (id, json!({ "ticket": self.tickets[&id].json, "audit": audit }))
    }

    /// Applies an Update Ticket body (status, comment, metadata) to a ticket this fake holds;
    /// the answer's `{"ticket", "audit"}`.
    pub fn update_ticket(&mut self, id: u64, update: &Value) -> Value {
        if let Some(status) = update["status"].as_str() {
            self.tickets.get_mut(&id).expect("a ticket of this fake").json["status"] = json!(status);
        }
        let custom = update.get("metadata").cloned().unwrap_or(json!({}));
        let audit = self.audit(id, custom, update.get("comment"));
        json!({ "ticket": self.tickets[&id].json, "audit": audit })
    }

    /// Adds an audit to a ticket this fake holds, with the comment it carries if any; the audit
    /// as List Audits shows it.
    pub fn audit(&mut self, ticket: u64, custom: Value, comment: Option<&Value>) -> Value {
        self.next_audit += 1;
        let files = comment.map(|comment| self.upload_files(comment));
        let audit = Audit {
            id: self.next_audit,
            custom: custom.clone(),
            comment: comment.cloned(),
        };
        let shown = audit_json(ticket, &audit);
        let stored = self.tickets.get_mut(&ticket).expect("a ticket of this fake");
        stored.view.audits.push(custom);
        if let (Some(comment), Some(files)) = (comment, files) {
            stored.view.comments.push(comment["body"].as_str().unwrap_or_default().to_owned());
            stored.view.arrived.push(SystemTime::now());
            stored.view.files.push(files);
        }
        stored.audits.push(audit);
        shown
    }

    /// A ticket's first audit (the one its creation made) as List Audits shows it.
    pub fn first_audit_json(&self, ticket: u64) -> Option<Value> {
        let stored = self.tickets.get(&ticket)?;
        Some(audit_json(ticket, stored.audits.first()?))
    }

    /// A ticket's audits as List Audits shows them, oldest first; `None` for an unknown ticket.
    pub fn audits_json(&self, ticket: u64) -> Option<Vec<Value>> {
        let stored = self.tickets.get(&ticket)?;
        Some(stored.audits.iter().map(|audit| audit_json(ticket, audit)).collect())
    }

    /// The files (name, bytes) of a comment's `uploads` (tokens this server issued as `tok<N>`).
    fn upload_files(&self, comment: &Value) -> Vec<(String, usize)> {
        let tokens = comment.get("uploads").and_then(Value::as_array).cloned().unwrap_or_default();
        tokens
            .iter()
            .filter_map(|token| upload_number(token.as_str()?))
            .filter_map(|n| self.uploads.get(n.checked_sub(1)?).cloned())
            .collect()
    }

    /// A comment's `uploads` token that this server did not issue, if any.
    pub fn unknown_upload(&self, comment: &Value) -> Option<String> {
        let tokens = comment.get("uploads")?.as_array()?;
        tokens.iter().find_map(|token| {
            let issued = token
                .as_str()
                .and_then(upload_number)
                .is_some_and(|n| (1..=self.uploads.len()).contains(&n));
            (!issued).then(|| format!("unknown upload token {token}"))
        })
    }
}

/// N of the upload token `tok<N>`.
fn upload_number(token: &str) -> Option<usize> {
    token.strip_prefix("tok")?.parse().ok()
}

/// A new ticket as Zendesk shows it, from the `ticket` of its Create Ticket body.
fn ticket_json(base: &str, id: u64, input: &Value) -> Value {
    json!({
        "id": id,
        "url": format!("{base}/api/v2/tickets/{id}.json"),
        "external_id": input["external_id"],
        "subject": input["subject"],
        "raw_subject": input["subject"],
        "description": input["comment"]["body"],
        "status": "new",
        "priority": input.get("priority").cloned().unwrap_or(Value::Null),
        "requester_id": REQUESTER_ID,
        "submitter_id": REQUESTER_ID,
        "group_id": input.get("group_id").cloned().unwrap_or(Value::Null),
        "tags": input["tags"],
        "custom_fields": input.get("custom_fields").cloned().unwrap_or(json!([])),
        "via": { "channel": "api" },
        "created_at": "2026-05-04T10:00:00Z",
        "updated_at": "2026-05-04T10:00:00Z",
    })
}

/// An audit as List Audits shows it: the custom metadata and a `Comment` event for its comment
/// (authored by `author_id`, else the requester).
fn audit_json(ticket: u64, audit: &Audit) -> Value {
    let events: Vec<Value> = audit
        .comment
        .iter()
        .map(|comment| {
            json!({
                "id": audit.id * 10,
                "type": "Comment",
                "author_id": comment["author_id"].as_u64().unwrap_or(REQUESTER_ID),
                "body": comment["body"],
                "public": comment["public"],
                "attachments": [],
            })
        })
        .collect();
    json!({
        "id": audit.id,
        "ticket_id": ticket,
        "created_at": "2026-05-04T10:00:00Z",
        "author_id": 1,
        "metadata": { "custom": audit.custom, "system": { "client": "omni-router", "ip_address": "127.0.0.1" } },
        "via": { "channel": "api" },
        "events": events,
    })
}
