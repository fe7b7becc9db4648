//! Zendesk Support, through its Ticketing API v2 (`/api/v2/`).
//!
//! What omni records in Zendesk, so the router can find its work again after a crash (nothing
//! has to be set up in Zendesk for it):
//! - the ticket's `external_id`: the conversation id (found with `GET /api/v2/tickets?external_id=`);
//! - the custom metadata of the audit that created the ticket (`omni_conversation_id`,
//!   `omni_origin_event_id`), and of the audit that added each follow-up (`omni_event_id`),
//!   read back with `GET /api/v2/tickets/{id}/audits`. Audit metadata is invisible to customers
//!   and agents; comments themselves cannot carry custom data.
//!
//! Ticket creation also sends Zendesk's `Idempotency-Key` (the event id): a retry of a create
//! whose response was lost returns the ticket already made, for two hours. Follow-ups
//! (`PUT /api/v2/tickets/{id}`) take no idempotency key; the router looks the event id up in the
//! audits before adding a follow-up again.
//!
//! The customer becomes the requester by email address; a customer known only by phone or chat id
//! becomes an address under `.invalid` (see [`super::requester::requestor`]). Follow-ups from
//! the customer are public comments authored by the ticket's requester (`author_id`); outbound
//! events are internal notes. Attachments carried inline are uploaded (`POST /api/v2/uploads`)
//! and attached to the comment; the others are listed in the comment with where to fetch them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use omni_proto::v1::attachment::Content;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{ConversationEvent, Direction, participant::Role};
use omni_runtime::{Problems, Validate};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde_json::{Value, json};

use super::requester::{requestor, subject};
use super::{
    FoundTicket, Helpdesk, HelpdeskError, Priority, Routing, TicketRef, error_for_status, text_with_listed_attachments, ticket_tags,
};

/// Audit metadata key holding the conversation id, on the audit that created the ticket.
pub const META_CONVERSATION: &str = "omni_conversation_id";
/// Audit metadata key holding the opening event id, on the audit that created the ticket.
pub const META_ORIGIN_EVENT: &str = "omni_origin_event_id";
/// Audit metadata key holding the event id of a follow-up, on the audit that added it.
pub const META_EVENT: &str = "omni_event_id";

/// Zendesk keeps an idempotency key for two hours and accepts keys of up to 255 characters.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Cursor pages of audits read before giving up (100 audits a page).
const MAX_AUDIT_PAGES: usize = 50;
/// Cursor pages of groups or ticket fields read when resolving a name.
const MAX_LIST_PAGES: usize = 20;

fn default_reopen() -> bool {
    true
}

/// `kind = "zendesk"` destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    /// The account's URL, `https://<subdomain>.zendesk.com`; the API is at `<base_url>/api/v2/`.
    pub base_url: String,
    /// The agent's email address, for API token authentication (with `api_token`).
    #[serde(default)]
    pub email: Option<String>,
    /// An API token (Admin Center > Apps and integrations > Zendesk API), sent as basic auth
    /// `<email>/token:<api_token>`.
    #[serde(default)]
    pub api_token: Option<String>,
    /// An OAuth access token (scopes `read write`), sent as a bearer token, instead of `email`
    /// and `api_token`.
    #[serde(default)]
    pub oauth_token: Option<String>,
    /// Id of the group new tickets go to when the routing rule names none; unset: Zendesk's
    /// own routing decides.
    #[serde(default)]
    pub group_id: Option<u64>,
    /// Set a `pending` or `solved` ticket back to `open` when the customer writes again (the
    /// API user, not the customer, is the updater of a follow-up, so Zendesk's own reopening on a
    /// requester's reply does not happen).
    #[serde(default = "default_reopen")]
    pub reopen_on_reply: bool,
    /// Seconds per HTTP request.
    pub timeout_secs: u64,
    /// The signing secret of the Zendesk webhook that tells omni-replies about agents' public
    /// comments (see [`replies`]); unset: this destination's answers are not taken.
    #[serde(default)]
    pub reply_secret: Option<String>,
}

impl fmt::Debug for ZendeskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("ZendeskConfig")
            .field("base_url", &self.base_url)
            .field("email", &self.email)
            .field("api_token", &redacted(&self.api_token))
            .field("oauth_token", &redacted(&self.oauth_token))
            .field("group_id", &self.group_id)
            .field("reopen_on_reply", &self.reopen_on_reply)
            .field("timeout_secs", &self.timeout_secs)
            .field("reply_secret", &redacted(&self.reply_secret))
            .finish()
    }
}

impl super::Destination for ZendeskConfig {
    fn build(&self) -> Result<std::sync::Arc<dyn super::Helpdesk>, reqwest::Error> {
        Ok(std::sync::Arc::new(Zendesk::new(self.clone())?))
    }

    fn reply_webhook(&self) -> Result<Option<std::sync::Arc<dyn super::replies::ReplyWebhook>>, reqwest::Error> {
        Ok(replies::ZendeskReplies::new(self).map(|replies| std::sync::Arc::new(replies) as _))
    }
}

impl Validate for ZendeskConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if reqwest::Url::parse(&self.base_url)
            .map(|url| !url.scheme().starts_with("http"))
            .unwrap_or(true)
        {
            problems.push(
                format!("{prefix}.base_url"),
                format!("`{}` is not an http(s) URL (https://<subdomain>.zendesk.com)", self.base_url),
            );
        }
        let filled = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
        let token = filled(&self.email) && filled(&self.api_token);
        problems.check(
            token ^ filled(&self.oauth_token),
            prefix,
            "set either `email` and `api_token`, or `oauth_token`",
        );
        if let Some(email) = &self.email {
            problems.check(email.contains('@'), format!("{prefix}.email"), "must be the agent's email address");
        }
        problems.check(self.group_id != Some(0), format!("{prefix}.group_id"), "must be a Zendesk group id");
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
        super::replies::check_reply_secret(self.reply_secret.as_deref(), &format!("{prefix}.reply_secret"), problems);
    }
}

/// What a routing rule may name instead of giving an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Named {
    Group,
    TicketField,
}

impl Named {
    /// List endpoint, response key, name property, what to call it in messages.
    fn listing(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Group => ("/groups", "groups", "name", "group"),
            Self::TicketField => ("/ticket_fields", "ticket_fields", "title", "ticket field"),
        }
    }
}

/// The Zendesk adapter.
pub struct Zendesk {
    config: ZendeskConfig,
    api: String,
    client: reqwest::Client,
    /// Group and ticket field ids by lowercase name, filled on first use.
    ids: Mutex<HashMap<(Named, String), u64>>,
}

impl Zendesk {
    /// Creates the adapter (no request is made).
    pub fn new(config: ZendeskConfig) -> Result<Self, reqwest::Error> {
        let client = super::http_client(config.timeout_secs).build()?;
        let api = format!("{}/api/v2", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            api,
            client,
            ids: Mutex::new(HashMap::new()),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .client
            .request(method, format!("{}{path}", self.api))
            .header(ACCEPT, "application/json");
        match (&self.config.oauth_token, &self.config.email) {
            (Some(token), _) => builder.bearer_auth(token),
            (None, Some(email)) => builder.basic_auth(format!("{email}/token"), self.config.api_token.as_deref()),
            (None, None) => builder,
        }
    }

    /// Sends a request; the JSON answer and the response headers.
    async fn send(&self, builder: RequestBuilder) -> Result<(Value, HeaderMap), HelpdeskError> {
        let answer = super::send(builder, |status, headers, body| {
            note_rate_limit(headers);
            // 409: another update of the same ticket (or the same idempotency key) is under way.
            if status == reqwest::StatusCode::CONFLICT {
                return Some(HelpdeskError::Unavailable(format!("status {status}: {}", truncate(body))));
            }
            let retry_after = headers.get(RETRY_AFTER).or_else(|| headers.get("ratelimit-reset"));
            Some(error_for_status(status, retry_after, body))
        })
        .await?;
        note_rate_limit(&answer.headers);
        Ok((answer.json()?, answer.headers))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, HelpdeskError> {
        Ok(self.send(self.request(Method::GET, path).query(query)).await?.0)
    }

    fn ticket_ref(&self, id: u64) -> TicketRef {
        TicketRef {
            id: id.to_string(),
            url: format!("{}/agent/tickets/{id}", self.config.base_url.trim_end_matches('/')),
        }
    }

    /// Reads the ticket's audits, oldest first, until `pick` finds something in an audit's custom
    /// metadata.
    async fn search_audits<T>(&self, ticket: u64, pick: impl Fn(&Value) -> Option<T>) -> Result<Option<T>, HelpdeskError> {
        let path = format!("/tickets/{ticket}/audits");
        let mut after: Option<String> = None;
        for _ in 0..MAX_AUDIT_PAGES {
            let mut query = vec![("page[size]", "100")];
            if let Some(cursor) = &after {
                query.push(("page[after]", cursor.as_str()));
            }
            let page = self.get(&path, &query).await?;
            for audit in page["audits"].as_array().into_iter().flatten() {
                if let Some(found) = pick(&audit["metadata"]["custom"]) {
                    return Ok(Some(found));
                }
            }
            match (page["meta"]["has_more"].as_bool(), page["meta"]["after_cursor"].as_str()) {
                (Some(true), Some(cursor)) => after = Some(cursor.to_owned()),
                _ => return Ok(None),
            }
        }
        tracing::warn!(ticket, "zendesk: more than {MAX_AUDIT_PAGES} pages of audits, stopped reading");
        Ok(None)
    }

    /// The id of a group or ticket field a routing rule gave by id or by name.
    async fn id_of(&self, kind: Named, name_or_id: &str) -> Result<u64, HelpdeskError> {
        if let Ok(id) = name_or_id.trim().parse::<u64>() {
            return Ok(id);
        }
        let key = (kind, name_or_id.trim().to_lowercase());
        if let Some(id) = self.cached_id(&key) {
            return Ok(id);
        }
        // Unknown (or created since the last look): read the whole list once more.
        let (path, items, property, what) = kind.listing();
        let mut found = HashMap::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![("page[size]", "100")];
            if let Some(cursor) = &after {
                query.push(("page[after]", cursor.as_str()));
            }
            let page = self.get(path, &query).await?;
            for item in page[items].as_array().into_iter().flatten() {
                if let (Some(name), Some(id)) = (item[property].as_str(), item["id"].as_u64()) {
                    found.insert((kind, name.trim().to_lowercase()), id);
                }
            }
            match (page["meta"]["has_more"].as_bool(), page["meta"]["after_cursor"].as_str()) {
                (Some(true), Some(cursor)) => after = Some(cursor.to_owned()),
                _ => break,
            }
        }
        let id = found.get(&key).copied();
        self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(found);
        id.ok_or_else(|| HelpdeskError::Misconfigured(format!("Zendesk has no {what} named `{name_or_id}`")))
    }

    fn cached_id(&self, key: &(Named, String)) -> Option<u64> {
        self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).copied()
    }

    /// Uploads the attachments carried inline. Returns the upload tokens, and for each attachment
    /// whether it went up (the others are listed in the comment). An upload Zendesk refuses (too
    /// large, a type it blocks) is listed rather than failing the whole event.
    async fn upload_attachments(&self, event: &ConversationEvent) -> Result<(Vec<String>, Vec<bool>), HelpdeskError> {
        let mut tokens = Vec::new();
        let mut uploaded = Vec::with_capacity(event.attachments.len());
        for (index, attachment) in event.attachments.iter().enumerate() {
            let Some(Content::Data(data)) = &attachment.content else {
                uploaded.push(false);
                continue;
            };
            let filename = if attachment.name.trim().is_empty() {
                format!("attachment-{}", index + 1)
            } else {
                attachment.name.clone()
            };
            let media_type = if attachment.media_type.is_empty() {
                "application/octet-stream"
            } else {
                attachment.media_type.as_str()
            };
            let request = self
                .request(Method::POST, "/uploads")
                .query(&[("filename", filename.as_str())])
                .header(CONTENT_TYPE, media_type)
                .body(data.clone());
            match self.send(request).await {
                Ok((answer, _)) => {
                    let token = answer["upload"]["token"]
                        .as_str()
                        .ok_or_else(|| HelpdeskError::Unavailable(format!("upload answered without a token: {answer}")))?;
                    tokens.push(token.to_owned());
                    uploaded.push(true);
                }
                Err(HelpdeskError::Rejected { status, detail }) => {
                    tracing::warn!(event_id = %event.event_id, %filename, status, %detail, "zendesk refused an attachment; listed in the comment instead");
                    uploaded.push(false);
                }
                Err(error) => return Err(error),
            }
        }
        Ok((tokens, uploaded))
    }

    /// The comment object for an event: its text, what was not uploaded listed, the uploads.
    async fn comment(&self, event: &ConversationEvent, public: bool) -> Result<Value, HelpdeskError> {
        let (tokens, uploaded) = self.upload_attachments(event).await?;
        let mut comment = json!({ "body": comment_body(event, &uploaded), "public": public });
        if !tokens.is_empty() {
            comment["uploads"] = json!(tokens);
        }
        Ok(comment)
    }
}

/// Logs the account's remaining requests when the budget runs low.
fn note_rate_limit(headers: &HeaderMap) {
    let remaining = ["ratelimit-remaining", "x-rate-limit-remaining"]
        .into_iter()
        .find_map(|name| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok());
    if let Some(remaining) = remaining
        && remaining < 10
    {
        tracing::debug!(remaining, "zendesk: few API requests left this minute");
    }
}

fn truncate(body: &str) -> String {
    body.chars().take(512).collect()
}

/// The ticket id as Zendesk's number.
fn ticket_number(ticket: &TicketRef) -> Result<u64, HelpdeskError> {
    ticket.id.parse().map_err(|_| HelpdeskError::Rejected {
        status: 0,
        detail: format!("`{}` is not a Zendesk ticket id", ticket.id),
    })
}

/// Zendesk's priority value.
fn zendesk_priority(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

/// A Zendesk tag: lowercase, no spaces (Zendesk splits tags on spaces).
fn tag(value: &str) -> String {
    value
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_whitespace() || c == ',' { '_' } else { c })
        .collect()
}

/// The name a new requester gets: the customer's own, else the phone, user name or platform id
/// they are known by, else the email address.
fn requester_name(event: &ConversationEvent, address: &str) -> String {
    let customer = event.participants.iter().find(|p| p.role == Role::Customer as i32);
    if let Some(name) = customer.map(|c| c.display_name.trim()).filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    customer
        .and_then(|c| {
            [Kind::Phone, Kind::Username, Kind::PlatformUserId]
                .into_iter()
                .find_map(|kind| c.identifiers.iter().find(|i| i.kind == kind as i32 && !i.value.is_empty()))
        })
        .map(|identifier| identifier.value.clone())
        .unwrap_or_else(|| address.to_owned())
}

/// The comment text: what the sender wrote this time, then what came with it and is not attached.
fn comment_body(event: &ConversationEvent, uploaded: &[bool]) -> String {
    let listed: Vec<_> = event
        .attachments
        .iter()
        .enumerate()
        .filter(|(index, _)| !uploaded.get(*index).copied().unwrap_or(false))
        .map(|(_, attachment)| attachment)
        .collect();
    text_with_listed_attachments(event, &listed, "(unnamed)")
}

/// The idempotency key of the ticket an event opens.
fn idempotency_key(event_id: &str) -> String {
    format!("omni-{event_id}").chars().take(MAX_IDEMPOTENCY_KEY).collect()
}

#[async_trait]
impl Helpdesk for Zendesk {
    async fn check(&self) -> Result<(), HelpdeskError> {
        // Answers anyone, anonymous users included: the role tells whether the credentials
        // authenticated an agent.
        let me = self.get("/users/me", &[]).await?;
        let role = me["user"]["role"].as_str().unwrap_or_default();
        if me["user"]["id"].is_null() || !matches!(role, "agent" | "admin") {
            return Err(HelpdeskError::Misconfigured(format!(
                "the credentials do not authenticate an agent (role `{}`): use an agent's email and API token, or an OAuth token",
                if role.is_empty() { "anonymous" } else { role }
            )));
        }
        if let Some(group) = self.config.group_id {
            match self.get(&format!("/groups/{group}"), &[]).await {
                Ok(_) => {}
                Err(HelpdeskError::Rejected { status: 404, .. }) => {
                    return Err(HelpdeskError::Misconfigured(format!("group {group} does not exist")));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        let found = self.get("/tickets", &[("external_id", conversation_id)]).await?;
        // Several would mean someone opened one by hand with our external id: take the oldest.
        let id = found["tickets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ticket| ticket["external_id"].as_str() == Some(conversation_id))
            .filter_map(|ticket| ticket["id"].as_u64())
            .min();
        let Some(id) = id else { return Ok(None) };
        let origin_event_id = self
            .search_audits(id, |custom| custom[META_ORIGIN_EVENT].as_str().map(str::to_owned))
            .await?
            .unwrap_or_default();
        Ok(Some(FoundTicket {
            ticket: self.ticket_ref(id),
            origin_event_id,
        }))
    }

    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError> {
        let id = ticket_number(ticket)?;
        let found = self
            .search_audits(id, |custom| {
                (custom[META_EVENT] == event_id || custom[META_ORIGIN_EVENT] == event_id).then_some(())
            })
            .await?;
        Ok(found.is_some())
    }

    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        let address = requestor(event).ok_or_else(|| HelpdeskError::Rejected {
            status: 0,
            detail: "the event names no customer with an email, phone or platform id".into(),
        })?;
        let group_id = match &routing.group {
            Some(group) => Some(self.id_of(Named::Group, group).await?),
            None => self.config.group_id,
        };
        let mut custom_fields = Vec::with_capacity(routing.custom_fields.len());
        for (field, value) in &routing.custom_fields {
            custom_fields.push(json!({ "id": self.id_of(Named::TicketField, field).await?, "value": value }));
        }
        // What the team wrote elsewhere opens the ticket as an internal note.
        let public = event.direction() != Direction::Outbound;
        let mut ticket = json!({
            "subject": subject(event),
            "comment": self.comment(event, public).await?,
            "requester": { "name": requester_name(event, &address), "email": address },
            "external_id": event.conversation_id,
            "tags": ticket_tags(event, routing, tag),
            "metadata": { META_CONVERSATION: event.conversation_id, META_ORIGIN_EVENT: event.event_id },
        });
        if !custom_fields.is_empty() {
            ticket["custom_fields"] = json!(custom_fields);
        }
        if let Some(group_id) = group_id {
            ticket["group_id"] = json!(group_id);
        }
        if let Some(priority) = routing.priority {
            ticket["priority"] = json!(zendesk_priority(priority));
        }
        let request = self
            .request(Method::POST, "/tickets")
            .header("Idempotency-Key", idempotency_key(&event.event_id))
            .json(&json!({ "ticket": ticket }));
        let created = match self.send(request).await {
            Ok((created, headers)) => {
                if headers.get("x-idempotency-lookup").is_some_and(|v| v == "hit") {
                    tracing::info!(event_id = %event.event_id, "zendesk: the ticket was already created by an earlier try");
                }
                created
            }
            // The key was used with another body within two hours: an earlier try reached Zendesk
            // (new upload tokens make this retry's body differ). Its ticket carries the event.
            Err(HelpdeskError::Rejected { status: 400, detail }) if detail.contains("IdempotentRequestError") => {
                return match self.find_ticket(&event.conversation_id).await? {
                    Some(found) if found.origin_event_id == event.event_id => Ok(found.ticket),
                    _ => Err(HelpdeskError::Unavailable(format!(
                        "idempotency key of event {} already used, and its ticket not found yet: {detail}",
                        event.event_id
                    ))),
                };
            }
            Err(error) => return Err(error),
        };
        created["ticket"]["id"]
            .as_u64()
            .map(|id| self.ticket_ref(id))
            .ok_or_else(|| HelpdeskError::Unavailable(format!("ticket created without an id in the response: {created}")))
    }

    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        let id = ticket_number(ticket)?;
        let path = format!("/tickets/{id}");
        // What the team itself wrote elsewhere (an Aircall call comment) is an internal note,
        // never a public reply Zendesk would mail to the customer.
        let from_customer = event.direction() != Direction::Outbound;
        let current = if from_customer { Some(self.get(&path, &[]).await?) } else { None };
        let mut update = json!({
            "comment": self.comment(event, from_customer).await?,
            "metadata": { META_EVENT: event.event_id },
        });
        if let Some(current) = current {
            // Shown as written by the requester (the API user stays the updater).
            if let Some(requester) = current["ticket"]["requester_id"].as_u64() {
                update["comment"]["author_id"] = json!(requester);
            }
            if self.config.reopen_on_reply && matches!(current["ticket"]["status"].as_str(), Some("pending" | "solved")) {
                update["status"] = json!("open");
            }
        }
        self.send(self.request(Method::PUT, &path).json(&json!({ "ticket": update })))
            .await?;
        Ok(())
    }
}

pub mod replies;
#[cfg(test)]
mod tests;
