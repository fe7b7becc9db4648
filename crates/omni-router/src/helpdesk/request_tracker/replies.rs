//! The agents' answers in Request Tracker, by polling REST2 transactions.
//!
//! One poll: the `Correspond` transactions after the cursor not written by omni's own RT user
//! (`ObjectType = 'RT::Ticket' AND Type = 'Correspond' AND Creator != <id> AND id > <cursor>`,
//! oldest first, a page at a time), kept when their ticket carries `omni Conversation` (one
//! ticket search per page: TransactionSQL cannot test a ticket's custom field) and their creator
//! is privileged (a requestor who mailed RT directly is not an agent). Comments are never taken.
//! The text is RT's own choice of body: the first `text/plain` part that is not a file, else the
//! first `text/html` as text. Probed against RT 5.0.3: docs/notes/rt-reply-intake.md.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Body, ContactIdentifier, Participant, participant::Role};
use serde_json::Value;

use super::{CF_CONVERSATION, RequestTracker};
use crate::helpdesk::replies::{AgentReply, Polled, ReplyPoller};
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

    async fn correspondence_after(&self, cursor: &str) -> Result<Vec<Value>, HelpdeskError> {
        let own = self.own_id().await?;
        // A cursor that is not a number would read as 0 and send RT's whole history again.
        let cursor: u64 = cursor
            .parse()
            .map_err(|_| HelpdeskError::Misconfigured(format!("reply cursor `{cursor}` is not an RT transaction id")))?;
        let query = format!("ObjectType = 'RT::Ticket' AND Type = 'Correspond' AND Creator != {own} AND id > {cursor}");
        let per_page = PAGE.to_string();
        let found = self
            .get(
                "/transactions",
                &[
                    ("query", query.as_str()),
                    ("orderby", "id"),
                    ("order", "ASC"),
                    ("per_page", per_page.as_str()),
                    ("fields", "Type,Creator,Created,ObjectId,CustomFields"),
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

    /// The transaction's body as RT picks it; `None` when it has no text part (yet).
    async fn body(&self, transaction_id: &str) -> Result<Option<Body>, HelpdeskError> {
        let parts = self
            .get(
                &format!("/transaction/{transaction_id}/attachments"),
                &[("fields", "ContentType,Content,Filename,Headers"), ("per_page", "100")],
            )
            .await?;
        Ok(pick_body(parts["items"].as_array().map(Vec::as_slice).unwrap_or_default()))
    }
}

/// RT's body of a transaction: the first `text/plain` part that is not a file, else the first
/// such `text/html`, as text.
fn pick_body(parts: &[Value]) -> Option<Body> {
    let is_body = |part: &&Value, kind: &str| {
        let content_type = part["ContentType"].as_str().unwrap_or_default().to_ascii_lowercase();
        let file = !part["Filename"].as_str().unwrap_or_default().is_empty()
            || part["Headers"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains("content-disposition: attachment");
        content_type.starts_with(kind) && !file && !part["Content"].as_str().unwrap_or_default().trim().is_empty()
    };
    let content = |part: &Value| part["Content"].as_str().unwrap_or_default().trim_end().replace("\r\n", "\n");
    if let Some(text) = parts.iter().find(|part| is_body(part, "text/plain")) {
        let text = content(text);
        return Some(Body {
            new_text: text.clone(),
            text,
            html: String::new(),
        });
    }
    let html = content(parts.iter().find(|part| is_body(part, "text/html"))?);
    let text = mail_parser::decoders::html::html_to_text(&html).trim().to_owned();
    Some(Body {
        new_text: text.clone(),
        text,
        html,
    })
}

#[async_trait]
impl ReplyPoller for RtReplies {
    async fn poll(&self, cursor: Option<&str>) -> Result<Polled, HelpdeskError> {
        let Some(cursor) = cursor else {
            let newest = self.newest_transaction().await?;
            tracing::info!(cursor = %newest, "no reply cursor yet: taking answers written from now on");
            return Ok(Polled {
                replies: Vec::new(),
                cursor: newest,
            });
        };
        let transactions = self.correspondence_after(cursor).await?;
        let ticket_ids: Vec<&str> = transactions.iter().filter_map(|t| t["ObjectId"].as_str()).collect();
        let tickets = self.omni_tickets(&ticket_ids).await?;
        let mut polled = Polled {
            replies: Vec::new(),
            cursor: cursor.to_owned(),
        };
        for transaction in &transactions {
            let Some(id) = transaction["id"].as_str() else { continue };
            match self.step(transaction, id, &tickets).await? {
                Step::Take(reply) => polled.replies.push(*reply),
                Step::Skip => {}
                // Its body is not stored yet: this poll ends before it, the next looks again.
                Step::Wait => break,
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
        let Some(body) = self.body(id).await? else {
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
            written_at,
        })))
    }
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
            json!({"ContentType": "multipart/mixed", "Content": ""}),
            json!({"ContentType": "text/plain", "Filename": "fatura.txt", "Content": "file"}),
            json!({"ContentType": "text/plain; charset=utf-8", "Filename": "", "Content": "Kargonuz yolda.\r\n"}),
        ];
        let body = pick_body(&parts).unwrap();
        assert_eq!(body.text, "Kargonuz yolda.");
        assert!(body.html.is_empty());
    }

    #[test]
    fn an_html_only_answer_is_read_as_text() {
        let parts = [
            json!({"ContentType": "text/html", "Content": "<p>Beste Jan,</p><p>uw pakket is <b>onderweg</b>.</p>"}),
            json!({"ContentType": "text/plain", "Filename": "", "Headers": "Content-Disposition: attachment; filename=x", "Content": "x"}),
        ];
        let body = pick_body(&parts).unwrap();
        assert!(body.text.contains("Beste Jan,"), "{}", body.text);
        assert!(body.text.contains("onderweg"), "{}", body.text);
        assert!(!body.text.contains('<'), "{}", body.text);
        assert!(body.html.starts_with("<p>"));
    }

    #[test]
    fn no_text_part_is_no_body() {
        assert_eq!(pick_body(&[json!({"ContentType": "multipart/mixed", "Content": ""})]), None);
        assert_eq!(pick_body(&[]), None);
    }

    /// A REST2 stand-in with transactions 11-15 after cursor 10, each a case of its own; the
    /// shapes are those probed on RT 5.0.3 (docs/notes/rt-reply-intake.md).
    async fn rt_stub() -> String {
        use axum::extract::{Path, Query};
        use axum::routing::get;
        let old = "2026-12-01T10:00:00Z";
        let now = prost_types::Timestamp::from(SystemTime::now()).to_string();
        let transactions = json!({"count": 5, "items": [
            {"id": "11", "ObjectId": "1", "Type": "Correspond", "Created": old, "Creator": {"id": 14}, "CustomFields": [{"name": "omni Event", "values": []}]},
            {"id": "12", "ObjectId": "2", "Type": "Correspond", "Created": old, "Creator": {"id": 14}, "CustomFields": []},
            {"id": "13", "ObjectId": "1", "Type": "Correspond", "Created": old, "Creator": {"id": 40}, "CustomFields": []},
            {"id": "14", "ObjectId": "1", "Type": "Correspond", "Created": old, "Creator": {"id": 14}, "CustomFields": [{"name": "omni Event", "values": ["e-7"]}]},
            {"id": "15", "ObjectId": "1", "Type": "Correspond", "Created": now, "Creator": {"id": 14}, "CustomFields": []},
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
                    assert!(query.contains("Type = 'Correspond'") && query.contains("Creator != 27") && query.contains("id > 10"), "{query}");
                    axum::Json(transactions)
                }
            }))
            .route("/REST/2.0/tickets", get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                assert!(q["query"].starts_with("'CF.{omni Conversation}' IS NOT NULL AND (id = 1 OR id = 2"), "{}", q["query"]);
                axum::Json(json!({"items": [{"id": "1", "Subject": "Siparişim nerede?", "CustomFields": [{"name": "omni Conversation", "values": ["c-1"]}]}]}))
            }))
            .route("/REST/2.0/transaction/{id}/attachments", get(|Path(id): Path<String>| async move {
                axum::Json(match id.as_str() {
                    "11" => json!({"items": [{"ContentType": "text/plain", "Filename": "", "Content": "Kargonuz yolda."}]}),
                    _ => json!({"items": []}),
                })
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
        // 11: taken. 12: not an omni ticket. 13: a requestor. 14: omni's own write. 15: too
        // young to be without a body: the cursor stays before it.
        assert_eq!(polled.cursor, "14");
        assert_eq!(polled.replies.len(), 1, "{:?}", polled.replies);
        let reply = &polled.replies[0];
        assert_eq!((reply.comment_id.as_str(), reply.conversation_id.as_str()), ("11", "c-1"));
        assert_eq!(reply.body.text, "Kargonuz yolda.");
        assert_eq!(reply.ticket_reference, "[omni-local #1]");
        assert_eq!(reply.subject, "Siparişim nerede?");
        assert_eq!(reply.agent.display_name, "Deniz Agent");
        assert_eq!(reply.agent.role, Role::Agent as i32);
    }

    #[tokio::test]
    async fn a_first_poll_starts_from_now_and_a_bad_cursor_is_refused() {
        let rt = poller(rt_stub().await);
        assert_eq!(
            rt.poll(None).await.unwrap(),
            Polled {
                replies: Vec::new(),
                cursor: "99".into()
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
