//! The agents' answers in Request Tracker, by polling REST2 transactions.
//!
//! One poll: the `Correspond` transactions after the cursor not written by omni's own RT user
//! (`ObjectType = 'RT::Ticket' AND Type = 'Correspond' AND Creator != <id> AND id > <cursor>`,
//! oldest first, a page at a time), kept when their ticket carries `omni Conversation` (one
//! ticket search per page: TransactionSQL cannot test a ticket's custom field) and their creator
//! is privileged (a requestor who mailed RT directly is not an agent). Comments are never taken.
//! The text is RT's own choice of body: the first `text/plain` part that is not a file, else the
//! first `text/html` as text; the files the agent attached travel with the answer (up to 512 KiB
//! in all; a larger one is referenced, and the sender notes it on the ticket). Probed against RT
//! 5.0.3: docs/notes/rt-reply-intake.md.
//!
//! The same search takes the tickets' `Status` transactions (by anyone: RT itself reopens a
//! resolved ticket when the customer writes again): a change to `resolved` is a ticket solved, a
//! change from `resolved` or `rejected` back to `new`, `open` or `stalled` a reopen, for the
//! support KPIs; other changes (`new` to `open` on the first answer) are skipped.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Attachment, Body, ContactIdentifier, Participant, attachment, participant::Role};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{CF_CONVERSATION, RequestTracker};
use crate::helpdesk::replies::{AgentReply, Polled, ReplyPoller, StatusChange, TicketStatus};
use crate::helpdesk::{Helpdesk as _, HelpdeskError};

/// Transactions asked for per page (RT caps `per_page` at 100).
const PAGE: usize = 50;
/// An answer younger than this without a body yet is looked at again at the next poll: RT
/// stores a transaction before its attachments.
const BODY_GRACE: Duration = Duration::from_secs(30);

/// A ticket that carries a conversation.
struct OmniTicket {
    conversation_id: String,
    subject: String,
}

/// What RT says about a user.
#[derive(Clone)]
struct Agent {
    participant: Participant,
    privileged: bool,
}

/// Polls one RT for answers; remembers omni's user id and the users it looked up.
pub struct RtReplies {
    rt: RequestTracker,
    own_id: tokio::sync::OnceCell<String>,
    users: Mutex<HashMap<u64, Agent>>,
}

impl RtReplies {
    /// A poller over the adapter's client and credentials.
    pub fn new(rt: RequestTracker) -> Self {
        Self {
            rt,
            own_id: tokio::sync::OnceCell::new(),
            users: Mutex::new(HashMap::new()),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, HelpdeskError> {
        self.rt.send(self.rt.request(reqwest::Method::GET, path).query(query)).await
    }

    /// omni's own user id (a name that RT does not know would match every transaction).
    async fn own_id(&self) -> Result<&str, HelpdeskError> {
        let name = self
            .rt
            .config
            .api_user
            .as_ref()
            .or(self.rt.config.username.as_ref())
            .ok_or_else(|| {
                HelpdeskError::Misconfigured("set `api_user` (the RT user omni writes as) to take replies with a token".into())
            })?;
        let id = self
            .own_id
            .get_or_try_init(|| async {
                let path = format!(
                    "/user/{}",
                    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                );
                let user = self.get(&path, &[]).await?;
                user["id"]
                    .as_u64()
                    .map(|id| id.to_string())
                    .or_else(|| user["id"].as_str().map(str::to_owned))
                    .ok_or_else(|| HelpdeskError::Misconfigured(format!("RT user `{name}` not found")))
            })
            .await?;
        Ok(id)
    }

    async fn newest_transaction(&self) -> Result<String, HelpdeskError> {
        let found = self
            .get(
                "/transactions",
                &[
                    ("query", "ObjectType = 'RT::Ticket'"),
                    ("orderby", "id"),
                    ("order", "DESC"),
                    ("per_page", "1"),
                ],
            )
            .await?;
        match found["items"].as_array().map(Vec::as_slice) {
            Some([]) => Ok("0".to_owned()),
            Some([newest, ..]) => newest["id"]
                .as_str()
                .filter(|id| id.parse::<u64>().is_ok())
                .map(str::to_owned)
                .ok_or_else(|| HelpdeskError::Unavailable(format!("RT listed a transaction without a numeric id: {newest}"))),
            None => Err(HelpdeskError::Unavailable(format!("RT's transaction search has no items: {found}"))),
        }
    }

    async fn transactions_after(&self, cursor: &str) -> Result<Vec<Value>, HelpdeskError> {
        let own = self.own_id().await?;
        // A cursor that is not a number would read as 0 and send RT's whole history again.
        let cursor: u64 = cursor
            .parse()
            .map_err(|_| HelpdeskError::Misconfigured(format!("reply cursor `{cursor}` is not an RT transaction id")))?;
        let query =
            format!("ObjectType = 'RT::Ticket' AND id > {cursor} AND ((Type = 'Correspond' AND Creator != {own}) OR Type = 'Status')");
        let per_page = PAGE.to_string();
        let found = self
            .get(
                "/transactions",
                &[
                    ("query", query.as_str()),
                    ("orderby", "id"),
                    ("order", "ASC"),
                    ("per_page", per_page.as_str()),
                    ("fields", "Type,Creator,Created,ObjectId,CustomFields,OldValue,NewValue"),
                    // The creator's numeric id: user names (customers' addresses) need no quoting then.
                    ("fields[Creator]", "id"),
                ],
            )
            .await?;
        Ok(found["items"].as_array().cloned().unwrap_or_default())
    }

    /// The tickets among `ids` that carry a conversation.
    async fn omni_tickets(&self, ids: &[&str]) -> Result<BTreeMap<String, OmniTicket>, HelpdeskError> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let any: Vec<String> = ids.iter().map(|id| format!("id = {}", id.parse::<u64>().unwrap_or(0))).collect();
        let query = format!("'CF.{{{CF_CONVERSATION}}}' IS NOT NULL AND ({})", any.join(" OR "));
        let found = self
            .get(
                "/tickets",
                &[("query", query.as_str()), ("fields", "Subject,CustomFields"), ("per_page", "100")],
            )
            .await?;
        let mut tickets = BTreeMap::new();
        for item in found["items"].as_array().into_iter().flatten() {
            let conversation = item["CustomFields"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|cf| cf["name"] == CF_CONVERSATION)
                .and_then(|cf| cf["values"].get(0))
                .and_then(Value::as_str);
            if let (Some(id), Some(conversation)) = (item["id"].as_str(), conversation) {
                let subject = item["Subject"].as_str().unwrap_or_default().to_owned();
                tickets.insert(
                    id.to_owned(),
                    OmniTicket {
                        conversation_id: conversation.to_owned(),
                        subject,
                    },
                );
            }
        }
        Ok(tickets)
    }

    /// The user with RT id `id`; not privileged when RT does not know it.
    async fn agent(&self, id: u64) -> Result<Agent, HelpdeskError> {
        if let Some(agent) = self.users.lock().expect("users").get(&id) {
            return Ok(agent.clone());
        }
        let user = match self.get(&format!("/user/{id}"), &[]).await {
            Err(HelpdeskError::Rejected { status: 404, .. }) => Value::Null,
            other => other?,
        };
        let name = user["Name"].as_str().unwrap_or_default();
        let privileged = user["Privileged"].as_u64() == Some(1) || user["Privileged"].as_str() == Some("1");
        let real_name = user["RealName"].as_str().filter(|n| !n.is_empty()).unwrap_or(name);
        let identifiers = user["EmailAddress"]
            .as_str()
            .filter(|e| !e.is_empty())
            .map(|email| ContactIdentifier {
                kind: Kind::Email as i32,
                value: email.to_owned(),
                platform: String::new(),
            })
            .into_iter()
            .collect();
        let agent = Agent {
            participant: Participant {
                role: Role::Agent as i32,
                display_name: real_name.to_owned(),
                identifiers,
            },
            privileged,
        };
        self.users.lock().expect("users").insert(id, agent.clone());
        Ok(agent)
    }

    /// The transaction's body as RT picks it and the files the agent attached; `None` when it
    /// has no text part (yet). The parts are listed without their content (REST2 puts a binary
    /// part's raw bytes into the JSON list, which then does not parse), and each needed part is
    /// read on its own (`GET /attachment/<id>`: base64 content).
    async fn content(&self, transaction_id: &str) -> Result<Option<(Body, Vec<Attachment>)>, HelpdeskError> {
        let parts = self
            .get(
                &format!("/transaction/{transaction_id}/attachments"),
                &[("fields", "ContentType,Filename,Headers,ContentLength"), ("per_page", "100")],
            )
            .await?;
        let parts = parts["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        let Some((part, html)) = pick_body(parts) else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&self.part_content(part).await?).into_owned();
        let mut files = Vec::new();
        let mut inline_left = MAX_INLINE_FILES_BYTES;
        for part in parts.iter().filter(|part| is_file(part)) {
            let size = part["ContentLength"].as_str().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
            let mut file = Attachment {
                name: part["Filename"].as_str().unwrap_or_default().to_owned(),
                media_type: media_type(part),
                size_bytes: size as u64,
                ..Attachment::default()
            };
            if size <= inline_left {
                let data = self.part_content(part).await?;
                inline_left -= data.len().min(inline_left);
                file.size_bytes = data.len() as u64;
                file.sha256 = hex::encode(Sha256::digest(&data));
                file.content = Some(attachment::Content::Data(data));
            } else {
                // Too large for the answer's record: where it is, for the note the sender writes.
                file.content = Some(attachment::Content::Reference(part["_url"].as_str().unwrap_or_default().to_owned()));
            }
            files.push(file);
        }
        Ok(Some((body_of(text.trim_end().replace("\r\n", "\n"), html), files)))
    }

    /// One part's content, from its base64 in `GET /attachment/<id>`.
    async fn part_content(&self, part: &Value) -> Result<Vec<u8>, HelpdeskError> {
        let id = part["id"].as_str().unwrap_or_default();
        let attachment = self.get(&format!("/attachment/{id}"), &[]).await?;
        let encoded: String = attachment["Content"].as_str().unwrap_or_default().split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| HelpdeskError::Unavailable(format!("RT attachment {id} is not base64: {error}")))
    }
}

/// The answers' files kept in their outbound record, in bytes all together: the record stays
/// well below the broker's 1 MB; a file beyond is referenced, and the agent told.
const MAX_INLINE_FILES_BYTES: usize = 512 * 1024;

/// Whether a part is a file the agent attached (a name, or `Content-Disposition: attachment`).
fn is_file(part: &Value) -> bool {
    let content_type = part["ContentType"].as_str().unwrap_or_default().to_ascii_lowercase();
    let named = !part["Filename"].as_str().unwrap_or_default().is_empty();
    let disposition = part["Headers"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("content-disposition: attachment");
    !content_type.starts_with("multipart/") && (named || disposition)
}

/// A part's media type without parameters.
fn media_type(part: &Value) -> String {
    let content_type = part["ContentType"].as_str().unwrap_or("application/octet-stream");
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// RT's body part of a transaction: the first non-empty `text/plain` part that is not a file,
/// else the first such `text/html` (then `true`).
fn pick_body(parts: &[Value]) -> Option<(&Value, bool)> {
    let is_body = |part: &&Value, kind: &str| {
        let length = part["ContentLength"].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        media_type(part) == kind && !is_file(part) && length > 0
    };
    if let Some(text) = parts.iter().find(|part| is_body(part, "text/plain")) {
        return Some((text, false));
    }
    Some((parts.iter().find(|part| is_body(part, "text/html"))?, true))
}

/// The body from the chosen part's content.
fn body_of(content: String, html: bool) -> Body {
    if !html {
        return Body {
            new_text: content.clone(),
            text: content,
            html: String::new(),
        };
    }
    let text = mail_parser::decoders::html::html_to_text(&content).trim().to_owned();
    Body {
        new_text: text.clone(),
        text,
        html: content,
    }
}

#[async_trait]
impl ReplyPoller for RtReplies {
    async fn poll(&self, cursor: Option<&str>) -> Result<Polled, HelpdeskError> {
        let Some(cursor) = cursor else {
            let newest = self.newest_transaction().await?;
            tracing::info!(cursor = %newest, "no reply cursor yet: taking answers written from now on");
            return Ok(Polled {
                cursor: newest,
                ..Polled::default()
            });
        };
        let transactions = self.transactions_after(cursor).await?;
        let ticket_ids: Vec<&str> = transactions.iter().filter_map(|t| t["ObjectId"].as_str()).collect();
        let tickets = self.omni_tickets(&ticket_ids).await?;
        let mut polled = Polled {
            cursor: cursor.to_owned(),
            // A full page (a bulk resolve, a busy hour): the next page follows at once.
            more: transactions.len() >= PAGE,
            ..Polled::default()
        };
        for transaction in &transactions {
            let Some(id) = transaction["id"].as_str() else { continue };
            match self.step(transaction, id, &tickets).await? {
                Step::Take(reply) => polled.replies.push(*reply),
                Step::Status(change) => polled.statuses.push(change),
                Step::Skip => {}
                // Its body is not stored yet: this poll ends before it, the next looks again
                // after the interval.
                Step::Wait => {
                    polled.more = false;
                    break;
                }
            }
            polled.cursor = id.to_owned();
        }
        Ok(polled)
    }
}

/// What one correspondence transaction is to reply intake.
enum Step {
    /// An agent's public answer.
    Take(Box<AgentReply>),
    /// The ticket solved or reopened.
    Status(StatusChange),
    /// Not an answer to send (not an omni ticket, not an agent, omni's own write).
    Skip,
    /// An answer whose body RT has not stored yet.
    Wait,
}

impl RtReplies {
    async fn step(&self, transaction: &Value, id: &str, tickets: &BTreeMap<String, OmniTicket>) -> Result<Step, HelpdeskError> {
        let ticket_id = transaction["ObjectId"].as_str().unwrap_or_default();
        let Some(ticket) = tickets.get(ticket_id) else {
            tracing::debug!(transaction = id, ticket = ticket_id, "not an omni ticket (or not visible to omni)");
            return Ok(Step::Skip);
        };
        if transaction["Type"] == "Status" {
            return Ok(status_change(transaction, id, ticket, &self.rt).map_or(Step::Skip, Step::Status));
        }
        if records_an_event(transaction) {
            // omni's own correspondence written under another account: never echoed back.
            tracing::warn!(
                transaction = id,
                "correspondence carrying an omni Event skipped: is the router writing as an agent?"
            );
            return Ok(Step::Skip);
        }
        let Some(creator) = transaction["Creator"]["id"].as_u64() else {
            tracing::warn!(transaction = id, "correspondence without a creator skipped");
            return Ok(Step::Skip);
        };
        let agent = self.agent(creator).await?;
        if !agent.privileged {
            return Ok(Step::Skip); // a requestor who mailed RT directly
        }
        let written_at = transaction["Created"]
            .as_str()
            .and_then(|t| prost_types::Timestamp::from_str(t).ok());
        let Some((body, attachments)) = self.content(id).await? else {
            if is_recent(written_at) {
                return Ok(Step::Wait);
            }
            tracing::warn!(transaction = id, ticket = ticket_id, "answer without a text part skipped");
            return Ok(Step::Skip);
        };
        Ok(Step::Take(Box::new(AgentReply {
            comment_id: id.to_owned(),
            conversation_id: ticket.conversation_id.clone(),
            ticket: self.rt.ticket_ref(ticket_id),
            subject: ticket.subject.clone(),
            ticket_reference: self.rt.ticket_reference(ticket_id),
            agent: agent.participant,
            body,
            attachments,
            written_at,
        })))
    }
}

/// A `Status` transaction as a ticket solved or reopened; `None` for other changes.
fn status_change(transaction: &Value, id: &str, ticket: &OmniTicket, rt: &RequestTracker) -> Option<StatusChange> {
    const INACTIVE: [&str; 2] = ["resolved", "rejected"];
    let (old, new) = (transaction["OldValue"].as_str()?, transaction["NewValue"].as_str()?);
    let status = match new {
        "resolved" => TicketStatus::Solved,
        "new" | "open" | "stalled" if INACTIVE.contains(&old) => TicketStatus::Reopened,
        _ => return None,
    };
    Some(StatusChange {
        change_id: id.to_owned(),
        conversation_id: ticket.conversation_id.clone(),
        ticket: rt.ticket_ref(transaction["ObjectId"].as_str().unwrap_or_default()),
        status,
        changed_at: transaction["Created"]
            .as_str()
            .and_then(|t| prost_types::Timestamp::from_str(t).ok()),
    })
}

/// Whether a transaction carries an `omni Event` value: the router recorded an event with it.
fn records_an_event(transaction: &Value) -> bool {
    transaction["CustomFields"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|cf| cf["name"] == super::CF_EVENT && cf["values"].as_array().is_some_and(|v| !v.is_empty()))
}

fn is_recent(written_at: Option<prost_types::Timestamp>) -> bool {
    let Some(written) = written_at.and_then(|t| SystemTime::try_from(t).ok()) else {
        return false;
    };
    SystemTime::now()
        .duration_since(written)
        .map(|age| age < BODY_GRACE)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_body_is_the_first_text_part_that_is_not_a_file() {
        let parts = [
            json!({"id": "1", "ContentType": "multipart/mixed", "ContentLength": "0"}),
            json!({"id": "2", "ContentType": "text/plain", "Filename": "fatura.txt", "ContentLength": "4"}),
            json!({"id": "3", "ContentType": "text/plain; charset=utf-8", "Filename": "", "ContentLength": "17"}),
        ];
        let (part, html) = pick_body(&parts).unwrap();
        assert_eq!((part["id"].as_str(), html), (Some("3"), false));
        let files: Vec<&str> = parts.iter().filter(|p| is_file(p)).filter_map(|p| p["id"].as_str()).collect();
        assert_eq!(files, ["2"]);
        assert_eq!(body_of("Kargonuz yolda.".into(), false).text, "Kargonuz yolda.");
    }

    #[test]
    fn an_html_only_answer_is_read_as_text() {
        let parts = [
            json!({"id": "1", "ContentType": "text/html", "ContentLength": "60"}),
            json!({"id": "2", "ContentType": "text/plain", "Filename": "", "Headers": "Content-Disposition: attachment; filename=x", "ContentLength": "1"}),
        ];
        let (part, html) = pick_body(&parts).unwrap();
        assert_eq!((part["id"].as_str(), html), (Some("1"), true));
        let body = body_of("<p>Beste Jan,</p><p>uw pakket is <b>onderweg</b>.</p>".into(), true);
        assert!(body.text.contains("Beste Jan,"), "{}", body.text);
        assert!(body.text.contains("onderweg"), "{}", body.text);
        assert!(!body.text.contains('<'), "{}", body.text);
        assert!(body.html.starts_with("<p>"));
    }

    #[test]
    fn no_text_part_is_no_body() {
        assert!(pick_body(&[json!({"ContentType": "multipart/mixed", "ContentLength": "0"})]).is_none());
        assert!(pick_body(&[json!({"ContentType": "text/plain", "ContentLength": "0"})]).is_none());
        assert!(pick_body(&[]).is_none());
    }

    /// A REST2 stand-in with transactions 11-19 after cursor 10, each a case of its own; the
    /// shapes are those probed on RT 5.0.3 (docs/notes/rt-reply-intake.md).
    async fn rt_stub() -> String {
        use axum::extract::{Path, Query};
        use axum::routing::get;
        let old = "2026-12-01T10:00:00Z";
        let now = prost_types::Timestamp::from(SystemTime::now()).to_string();
        let transactions = json!({"count": 8, "items": [
            {"id": "11", "ObjectId": "1", "Type": "Correspond", "Created": old, "Creator": {"id": 14}, "CustomFields": [{"name": "omni Event", "values": []}]},
            {"id": "12", "ObjectId": "2", "Type": "Correspond", "Created": old, "Creator": {"id": 14}, "CustomFields": []},
            {"id": "13", "ObjectId": "1", "Type": "Correspond", "Created": old, "Creator": {"id": 40}, "CustomFields": []},
            {"id": "14", "ObjectId": "1", "Type": "Correspond", "Created": old, "Creator": {"id": 14}, "CustomFields": [{"name": "omni Event", "values": ["e-7"]}]},
            {"id": "15", "ObjectId": "1", "Type": "Status", "Created": old, "Creator": {"id": 1}, "OldValue": "new", "NewValue": "open"},
            {"id": "16", "ObjectId": "1", "Type": "Status", "Created": old, "Creator": {"id": 14}, "OldValue": "open", "NewValue": "resolved"},
            {"id": "17", "ObjectId": "2", "Type": "Status", "Created": old, "Creator": {"id": 14}, "OldValue": "open", "NewValue": "resolved"},
            {"id": "18", "ObjectId": "1", "Type": "Status", "Created": now, "Creator": {"id": 27}, "OldValue": "resolved", "NewValue": "open"},
            {"id": "19", "ObjectId": "1", "Type": "Correspond", "Created": now, "Creator": {"id": 14}, "CustomFields": []},
        ]});
        let app = axum::Router::new()
            .route("/REST/2.0/user/{user}", get(|Path(user): Path<String>| async move {
                axum::Json(match user.as_str() {
                    "omni" => json!({"id": 27, "Name": "omni", "Privileged": 1}),
                    "14" => json!({"id": 14, "Name": "root", "RealName": "Deniz Agent", "EmailAddress": "deniz@shop.example", "Privileged": 1}),
                    _ => json!({"id": 40, "Name": "jan@example.nl", "Privileged": 0}),
                })
            }))
            .route("/REST/2.0/transactions", get(move |Query(q): Query<std::collections::HashMap<String, String>>| {
                let transactions = transactions.clone();
                async move {
                    let query = &q["query"];
                    if query == "ObjectType = 'RT::Ticket'" {
                        return axum::Json(json!({"count": 1, "items": [{"id": "99"}]}));
                    }
                    assert_eq!(
                        query,
                        "ObjectType = 'RT::Ticket' AND id > 10 AND ((Type = 'Correspond' AND Creator != 27) OR Type = 'Status')"
                    );
                    assert!(q["fields"].contains("OldValue,NewValue"), "{}", q["fields"]);
                    axum::Json(transactions)
                }
            }))
            .route("/REST/2.0/tickets", get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                assert!(q["query"].starts_with("'CF.{omni Conversation}' IS NOT NULL AND (id = 1 OR id = 2"), "{}", q["query"]);
                axum::Json(json!({"items": [{"id": "1", "Subject": "Siparişim nerede?", "CustomFields": [{"name": "omni Conversation", "values": ["c-1"]}]}]}))
            }))
            .route("/REST/2.0/transaction/{id}/attachments", get(|Path(id): Path<String>, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                // Listing content would put a file's raw bytes into the JSON (RT 5.0.3 does).
                assert!(!q["fields"].contains("Content,") && !q["fields"].ends_with("Content"), "{}", q["fields"]);
                axum::Json(match id.as_str() {
                    "11" => json!({"items": [
                        {"id": "70", "ContentType": "multipart/mixed", "Filename": "", "ContentLength": "0"},
                        {"id": "71", "ContentType": "text/plain", "Filename": "", "ContentLength": "15"},
                        {"id": "72", "ContentType": "image/png", "Filename": "etiket.png", "ContentLength": "4", "_url": "http://rt/REST/2.0/attachment/72"},
                        {"id": "73", "ContentType": "application/pdf", "Filename": "fatura.pdf", "ContentLength": "900000", "_url": "http://rt/REST/2.0/attachment/73"},
                    ]}),
                    _ => json!({"items": []}),
                })
            }))
            .route("/REST/2.0/attachment/{id}", get(|Path(id): Path<String>| async move {
                use base64::Engine as _;
                let content: &[u8] = match id.as_str() {
                    "71" => "Kargonuz yolda.".as_bytes(),
                    "72" => &[0x89, b'P', b'N', b'G'],
                    other => panic!("attachment {other} read: a file above the limit is not fetched"),
                };
                axum::Json(json!({"id": id, "Content": base64::engine::general_purpose::STANDARD.encode(content)}))
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn poller(base_url: String) -> RtReplies {
        RtReplies::new(
            RequestTracker::new(super::super::RequestTrackerConfig {
                base_url,
                username: Some("omni".into()),
                password: Some("omni-local".into()),
                token: None,
                api_user: None,
                queue: "General".into(),
                timeout_secs: 5,
                subject_tag: "omni-local".into(),
            })
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_poll_takes_agents_answers_on_omni_tickets_and_stops_before_one_without_its_body() {
        let rt = poller(rt_stub().await);
        let polled = rt.poll(Some("10")).await.unwrap();
        // 11: taken. 12: not an omni ticket. 13: a requestor. 14: omni's own write. 15: new to
        // open, not a solve. 16: solved. 17: not an omni ticket. 18: reopened (by omni's own write:
        // RT reopens when the customer writes again). 19: too young to be without a body: the
        // cursor stays before it.
        assert_eq!(polled.cursor, "18");
        assert!(
            !polled.more,
            "a page of 8 and an answer to wait for: the next poll after the interval"
        );
        let statuses: Vec<(&str, &str, TicketStatus)> = polled
            .statuses
            .iter()
            .map(|s| (s.change_id.as_str(), s.conversation_id.as_str(), s.status))
            .collect();
        assert_eq!(
            statuses,
            [("16", "c-1", TicketStatus::Solved), ("18", "c-1", TicketStatus::Reopened)]
        );
        assert_eq!(polled.statuses[0].ticket.id, "1");
        assert_eq!(polled.statuses[0].changed_at.unwrap().to_string(), "2026-12-01T10:00:00Z");
        assert_eq!(polled.replies.len(), 1, "{:?}", polled.replies);
        let reply = &polled.replies[0];
        assert_eq!((reply.comment_id.as_str(), reply.conversation_id.as_str()), ("11", "c-1"));
        assert_eq!(reply.body.text, "Kargonuz yolda.");
        assert_eq!(reply.ticket_reference, "[omni-local #1]");
        assert_eq!(reply.subject, "Siparişim nerede?");
        assert_eq!(reply.agent.display_name, "Deniz Agent");
        assert_eq!(reply.agent.role, Role::Agent as i32);
        // The agent's files: the small one carried with its hash, the large one referenced.
        let files: Vec<(&str, &str, u64)> = reply
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), a.media_type.as_str(), a.size_bytes))
            .collect();
        assert_eq!(files, [("etiket.png", "image/png", 4), ("fatura.pdf", "application/pdf", 900_000)]);
        assert_eq!(
            reply.attachments[0].content,
            Some(attachment::Content::Data(vec![0x89, b'P', b'N', b'G']))
        );
        assert_eq!(reply.attachments[0].sha256, hex::encode(Sha256::digest([0x89, b'P', b'N', b'G'])));
        assert_eq!(
            reply.attachments[1].content,
            Some(attachment::Content::Reference("http://rt/REST/2.0/attachment/73".into()))
        );
    }

    #[tokio::test]
    async fn a_first_poll_starts_from_now_and_a_bad_cursor_is_refused() {
        let rt = poller(rt_stub().await);
        assert_eq!(
            rt.poll(None).await.unwrap(),
            Polled {
                cursor: "99".into(),
                ..Polled::default()
            }
        );
        assert!(matches!(rt.poll(Some("not-a-number")).await, Err(HelpdeskError::Misconfigured(_))));
    }

    #[test]
    fn a_recent_answer_waits_for_its_body() {
        assert!(is_recent(Some(SystemTime::now().into())));
        assert!(!is_recent(Some((SystemTime::now() - Duration::from_secs(120)).into())));
        assert!(!is_recent(None));
    }
}
