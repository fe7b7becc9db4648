//! Freshdesk, through its REST API v2 (`/api/v2/`, <https://developers.freshdesk.com/api/>).
//!
//! Freshdesk has no idempotency key, so omni records its ids in Freshdesk and looks them up
//! before doing anything twice:
//! - ticket custom field `cf_omni_conversation` (single-line text): the conversation id;
//! - ticket custom field `cf_omni_origin_event` (single-line text): the event that opened the ticket;
//! - the last line of every description and note: `[omni-event:<event id>]`.
//!
//! Create both fields once under Admin > Ticket Fields (labels `omni conversation` and
//! `omni origin event` give these names); the router's readiness check fails with a clear
//! message until they exist.
//!
//! Looking a conversation up: Freshdesk's ticket filter (`/search/tickets`) reads a search index
//! that "will take a few minutes" to catch up, so a ticket created just before a crash may not be
//! found there yet. When the filter finds nothing, the tickets updated within the last
//! `index_lag_secs` are listed (`/tickets?updated_since=`, read from the database) and their
//! custom field compared.
//!
//! The customer becomes the requester by email; a customer known only by phone by phone number
//! (with a name, as Freshdesk requires); a chat or social user id by an address of its platform
//! under `.invalid`, which can never receive mail (see [`super::requester::requestor`]).
//! A customer's follow-up is a public note in the requester's name (`incoming`, `user_id` of the
//! requester), which Freshdesk shows as the customer's reply; what the team wrote elsewhere
//! (an outbound event) is a private note. Inline attachments travel as files
//! (`multipart/form-data`), up to Freshdesk's 20 MB; the others are listed in the text.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Attachment, Channel, ConversationEvent, Direction, attachment::Content, participant::Role};
use omni_runtime::{Problems, Validate};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::requester::{requestor, subject};
use super::{
    FoundTicket, Helpdesk, HelpdeskError, Priority, Routing, TicketRef, attachment_name, split_attachments, text_with_listed_attachments,
    ticket_tags,
};

pub mod replies;
#[cfg(test)]
mod tests;

/// Largest total of attachment bytes sent with one ticket or note (Freshdesk: 20 MB).
pub const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;
/// The files sent with one message: [`MAX_ATTACHMENT_BYTES`] in all.
const LIMITS: super::AttachmentLimits = super::AttachmentLimits::per_message(MAX_ATTACHMENT_BYTES);
/// Tickets per page of a list (Freshdesk's maximum).
const PER_PAGE: usize = 100;
/// Pages of the recent ticket list scanned by `find_ticket`.
const RECENT_PAGES: u32 = 3;
/// Pages of a ticket's conversations read by `has_event` (10,000 conversations).
const CONVERSATION_PAGES: u32 = 100;

fn default_conversation_field() -> String {
    "cf_omni_conversation".into()
}

fn default_origin_event_field() -> String {
    "cf_omni_origin_event".into()
}

fn default_index_lag_secs() -> u64 {
    900
}

fn yes() -> bool {
    true
}

/// `kind = "freshdesk"` destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshdeskConfig {
    /// The helpdesk's URL, `https://<account>.freshdesk.com`; the API is at `<base_url>/api/v2/`.
    pub base_url: String,
    /// The API key of the agent omni acts as (basic auth `<api_key>:X`). Never logged.
    pub api_key: String,
    /// Group id new tickets go to when the routing rule names none; none: Freshdesk's own
    /// assignment rules decide.
    #[serde(default)]
    pub group_id: Option<u64>,
    /// Seconds per HTTP request.
    pub timeout_secs: u64,
    /// Name of the ticket custom field (single-line text) holding the conversation id.
    #[serde(default = "default_conversation_field")]
    pub conversation_field: String,
    /// Name of the ticket custom field (single-line text) holding the id of the opening event.
    #[serde(default = "default_origin_event_field")]
    pub origin_event_field: String,
    /// How far back, in seconds, `find_ticket` also lists recently updated tickets, for those
    /// Freshdesk's search index has not caught up with (0: the search alone).
    #[serde(default = "default_index_lag_secs")]
    pub index_lag_secs: u64,
    /// Customer follow-ups as public notes in the requester's name (Freshdesk shows them as the
    /// customer's reply); false: public notes in the name of the API key's agent.
    #[serde(default = "yes")]
    pub notes_as_requester: bool,
    /// The token the Freshdesk automation rule sends in its `X-Omni-Reply-Token` header when an
    /// agent replied (see [`replies`]); unset: this destination's answers are not taken.
    #[serde(default)]
    pub reply_secret: Option<String>,
}

impl fmt::Debug for FreshdeskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshdeskConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("group_id", &self.group_id)
            .field("timeout_secs", &self.timeout_secs)
            .field("conversation_field", &self.conversation_field)
            .field("origin_event_field", &self.origin_event_field)
            .field("index_lag_secs", &self.index_lag_secs)
            .field("notes_as_requester", &self.notes_as_requester)
            .field("reply_secret", &self.reply_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl super::Destination for FreshdeskConfig {
    fn build(&self) -> Result<std::sync::Arc<dyn super::Helpdesk>, reqwest::Error> {
        Ok(std::sync::Arc::new(Freshdesk::new(self.clone())?))
    }

    fn reply_webhook(&self) -> Result<Option<std::sync::Arc<dyn super::replies::ReplyWebhook>>, reqwest::Error> {
        Ok(replies::FreshdeskReplies::new(self)?.map(|replies| std::sync::Arc::new(replies) as _))
    }
}

impl Validate for FreshdeskConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if reqwest::Url::parse(&self.base_url)
            .map(|url| !url.scheme().starts_with("http"))
            .unwrap_or(true)
        {
            problems.push(format!("{prefix}.base_url"), format!("`{}` is not an http(s) URL", self.base_url));
        }
        problems.check(!self.api_key.trim().is_empty(), format!("{prefix}.api_key"), "must not be empty");
        super::replies::check_reply_secret(self.reply_secret.as_deref(), &format!("{prefix}.reply_secret"), problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
        for (key, field) in [
            ("conversation_field", &self.conversation_field),
            ("origin_event_field", &self.origin_event_field),
        ] {
            let valid = field.len() > 3 && field.starts_with("cf_") && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            problems.check(
                valid,
                format!("{prefix}.{key}"),
                format!("`{field}` is not a custom field name (`cf_` then letters, digits and `_`)"),
            );
        }
        problems.check(
            self.conversation_field != self.origin_event_field,
            format!("{prefix}.origin_event_field"),
            "must differ from `conversation_field`",
        );
    }
}

/// The Freshdesk adapter.
pub struct Freshdesk {
    config: FreshdeskConfig,
    api: String,
    client: reqwest::Client,
    /// Requester (contact) id by ticket id, so a follow-up costs one request.
    requesters: Mutex<HashMap<String, u64>>,
}

/// A `multipart/form-data` part.
enum Part {
    Text(String, String),
    File {
        name: String,
        filename: String,
        media_type: String,
        data: Vec<u8>,
    },
}

impl Freshdesk {
    /// Creates the adapter (no request is made).
    pub fn new(config: FreshdeskConfig) -> Result<Self, reqwest::Error> {
        let client = super::http_client(config.timeout_secs).build()?;
        let api = format!("{}/api/v2", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            api,
            client,
            requesters: Mutex::new(HashMap::new()),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.api))
            .basic_auth(&self.config.api_key, Some("X"))
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Value, HelpdeskError> {
        super::send(builder, |status, _, body| {
            (status == reqwest::StatusCode::BAD_REQUEST && self.refuses_our_fields(body)).then(|| {
                HelpdeskError::Misconfigured(format!(
                    "Freshdesk refused the omni custom fields `{}`/`{}` (create them under Admin > Ticket Fields): {}",
                    self.config.conversation_field,
                    self.config.origin_event_field,
                    body.chars().take(512).collect::<String>()
                ))
            })
        })
        .await?
        .json()
    }

    /// Whether a 400 body names one of omni's custom fields (they do not exist).
    fn refuses_our_fields(&self, body: &str) -> bool {
        let Ok(body) = serde_json::from_str::<Value>(body) else {
            return false;
        };
        body["errors"].as_array().into_iter().flatten().any(|error| {
            error["field"]
                .as_str()
                .is_some_and(|field| field == self.config.conversation_field || field == self.config.origin_event_field)
        })
    }

    fn ticket_ref(&self, id: &str) -> TicketRef {
        TicketRef {
            id: id.to_owned(),
            url: format!("{}/a/tickets/{id}", self.config.base_url.trim_end_matches('/')),
        }
    }

    /// Sends `fields` as JSON, or as `multipart/form-data` with the files when there are some.
    fn with_payload(
        &self,
        builder: reqwest::RequestBuilder,
        fields: &Map<String, Value>,
        files: &[&Attachment],
        boundary_seed: &str,
    ) -> reqwest::RequestBuilder {
        if files.is_empty() {
            return builder.json(fields);
        }
        let mut parts = form_parts(fields);
        for attachment in files {
            if let Some(Content::Data(data)) = &attachment.content {
                parts.push(Part::File {
                    name: "attachments[]".into(),
                    filename: attachment_name(attachment).into(),
                    media_type: if attachment.media_type.is_empty() {
                        "application/octet-stream".into()
                    } else {
                        attachment.media_type.clone()
                    },
                    data: data.clone(),
                });
            }
        }
        let (content_type, body) = encode_form(&parts, boundary_seed);
        builder.header(reqwest::header::CONTENT_TYPE, content_type).body(body)
    }

    fn custom_field<'a>(&self, ticket: &'a Value, field: &str) -> Option<&'a str> {
        ticket["custom_fields"][field].as_str()
    }

    /// Tickets updated within the last `index_lag_secs` whose conversation field is `conversation_id`.
    async fn recent_tickets(&self, conversation_id: &str) -> Result<Vec<Value>, HelpdeskError> {
        let since = SystemTime::now()
            .checked_sub(Duration::from_secs(self.config.index_lag_secs))
            .unwrap_or(UNIX_EPOCH);
        let since = rfc3339(since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default());
        let per_page = PER_PAGE.to_string();
        let mut found = Vec::new();
        for page in 1..=RECENT_PAGES {
            let page = page.to_string();
            let listed = self
                .send(self.request(reqwest::Method::GET, "/tickets").query(&[
                    ("updated_since", since.as_str()),
                    ("order_by", "created_at"),
                    ("order_type", "desc"),
                    ("per_page", per_page.as_str()),
                    ("page", page.as_str()),
                ]))
                .await?;
            let tickets = listed.as_array().cloned().unwrap_or_default();
            let last = tickets.len() < PER_PAGE;
            found.extend(
                tickets
                    .into_iter()
                    .filter(|t| self.custom_field(t, &self.config.conversation_field) == Some(conversation_id)),
            );
            if last {
                break;
            }
        }
        Ok(found)
    }

    async fn requester_id(&self, ticket: &TicketRef) -> Result<u64, HelpdeskError> {
        if let Some(id) = self.requesters.lock().expect("requesters lock").get(&ticket.id) {
            return Ok(*id);
        }
        let found = self
            .send(self.request(reqwest::Method::GET, &format!("/tickets/{}", ticket.id)))
            .await?;
        let id = found["requester_id"]
            .as_u64()
            .ok_or_else(|| HelpdeskError::Unavailable(format!("ticket {} came without a requester_id", ticket.id)))?;
        let mut requesters = self.requesters.lock().expect("requesters lock");
        if requesters.len() >= 10_000 {
            requesters.clear();
        }
        requesters.insert(ticket.id.clone(), id);
        Ok(id)
    }

    fn group_id(&self, routing: &Routing) -> Result<Option<u64>, HelpdeskError> {
        match routing.group.as_deref() {
            None => Ok(self.config.group_id),
            Some(group) => group
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| HelpdeskError::Misconfigured(format!("routing group `{group}` is not a Freshdesk group id (a number)"))),
        }
    }
}

/// The line recorded with each description and note: how `has_event` finds an event again.
pub fn event_marker(event_id: &str) -> String {
    format!("[omni-event:{event_id}]")
}

/// Freshdesk's priority (1 low, 2 medium, 3 high, 4 urgent) for a routing priority.
pub fn freshdesk_priority(priority: Priority) -> u8 {
    match priority {
        Priority::Low => 1,
        Priority::Normal => 2,
        Priority::High => 3,
        Priority::Urgent => 4,
    }
}

/// Freshdesk's ticket source for a channel, among the values its API documents for new tickets
/// (1 email, 2 portal, 3 phone, 7 chat, 9 feedback widget, 10 outbound email), by the channel's
/// family (`omni_proto::channels`): messaging, social and SMS channels are chats, the generic API
/// (contact forms) the portal. The channel itself is also a tag.
pub fn freshdesk_source(channel: Channel) -> u8 {
    match omni_proto::channels::channel_info(channel).map(|info| info.family) {
        Some("email") => 1,
        Some("voice") => 3,
        Some("api") | None => 2,
        Some(_) => 7,
    }
}

/// The requester fields of a new ticket: `email` (with the `name` when known), else `phone` and
/// `name` (Freshdesk wants a name with a phone), else the `.invalid` address of a platform id.
fn requester(event: &ConversationEvent) -> Option<Map<String, Value>> {
    let customer = event.participants.iter().find(|p| p.role == Role::Customer as i32)?;
    let by_kind = |kind: Kind| customer.identifiers.iter().find(|i| i.kind == kind as i32 && !i.value.is_empty());
    let name = customer.display_name.trim();
    let mut fields = Map::new();
    if let Some(email) = by_kind(Kind::Email) {
        fields.insert("email".into(), json!(email.value));
    } else if let Some(phone) = by_kind(Kind::Phone) {
        fields.insert("phone".into(), json!(phone.value));
        fields.insert("name".into(), json!(if name.is_empty() { phone.value.as_str() } else { name }));
        return Some(fields);
    } else {
        fields.insert("email".into(), json!(requestor(event)?));
    }
    if !name.is_empty() {
        fields.insert("name".into(), json!(name));
    }
    Some(fields)
}

/// The HTML Freshdesk wants for descriptions and notes: the text escaped, line breaks kept, and
/// the event marker as the last paragraph.
pub fn html_body(text: &str, event_id: &str) -> String {
    format!(
        "<div>{}</div><p>{}</p>",
        super::html::text_to_html(&text.replace('\r', "")),
        event_marker(event_id)
    )
}

/// JSON fields as form parts the way Freshdesk reads them: `tags[]` per tag, `custom_fields[<name>]`.
fn form_parts(fields: &Map<String, Value>) -> Vec<Part> {
    let scalar = |value: &Value| match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    for (name, value) in fields {
        match value {
            Value::Array(items) => parts.extend(items.iter().map(|item| Part::Text(format!("{name}[]"), scalar(item)))),
            Value::Object(entries) => parts.extend(entries.iter().map(|(key, item)| Part::Text(format!("{name}[{key}]"), scalar(item)))),
            Value::Null => {}
            value => parts.push(Part::Text(name.clone(), scalar(value))),
        }
    }
    parts
}

/// Encodes a `multipart/form-data` body (RFC 7578); returns its content type and bytes.
fn encode_form(parts: &[Part], seed: &str) -> (String, Vec<u8>) {
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    let mut boundary = format!("omni-form-{seed}");
    while parts.iter().any(|part| match part {
        Part::Text(_, value) => contains(value.as_bytes(), boundary.as_bytes()),
        Part::File { data, .. } => contains(data, boundary.as_bytes()),
    }) {
        boundary.push('x');
    }
    let quote = |s: &str| s.replace(['"', '\r', '\n'], "_");
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", quote(name)).as_bytes());
                body.extend_from_slice(value.as_bytes());
            }
            Part::File {
                name,
                filename,
                media_type,
                data,
            } => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                        quote(name),
                        quote(filename),
                        quote(media_type)
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A value inside a filter query's single quotes (ids are hex; quotes are dropped, and the
/// found tickets are compared exactly anyway).
fn query_value(value: &str) -> String {
    value.chars().filter(|c| !matches!(c, '\'' | '"' | '\\')).collect()
}

fn ticket_id(ticket: &Value) -> Option<u64> {
    ticket["id"].as_u64().or_else(|| ticket["id"].as_str()?.parse().ok())
}

#[async_trait]
impl Helpdesk for Freshdesk {
    fn attachment_limits(&self) -> Option<super::AttachmentLimits> {
        Some(LIMITS)
    }

    async fn check(&self) -> Result<(), HelpdeskError> {
        let fields = self.send(self.request(reqwest::Method::GET, "/ticket_fields")).await?;
        let names: Vec<&str> = fields
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|field| field["name"].as_str())
            .collect();
        let missing: Vec<&str> = [&self.config.conversation_field, &self.config.origin_event_field]
            .into_iter()
            .map(String::as_str)
            .filter(|wanted| !names.iter().any(|name| name == wanted || format!("cf_{name}") == *wanted))
            .collect();
        if !missing.is_empty() {
            return Err(HelpdeskError::Misconfigured(format!(
                "ticket custom fields {missing:?} missing: create them (single-line text) under Admin > Ticket Fields"
            )));
        }
        Ok(())
    }

    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        let query = format!("\"{}:'{}'\"", self.config.conversation_field, query_value(conversation_id));
        let found = self
            .send(
                self.request(reqwest::Method::GET, "/search/tickets")
                    .query(&[("query", query.as_str())]),
            )
            .await
            .map_err(|error| match error {
                // Our own query refused: the field is missing or not searchable, an operator must act.
                HelpdeskError::Rejected { status: 400, detail } => {
                    HelpdeskError::Misconfigured(format!("Freshdesk refused the ticket filter `{query}`: {detail}"))
                }
                other => other,
            })?;
        let mut tickets: Vec<Value> = found["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| self.custom_field(t, &self.config.conversation_field) == Some(conversation_id))
            .cloned()
            .collect();
        if tickets.is_empty() && self.config.index_lag_secs > 0 {
            tickets = self.recent_tickets(conversation_id).await?;
        }
        // Several would mean someone else set our field by hand: take the oldest.
        let Some(ticket) = tickets.iter().filter(|t| ticket_id(t).is_some()).min_by_key(|t| ticket_id(t)) else {
            return Ok(None);
        };
        let id = ticket_id(ticket).unwrap_or_default().to_string();
        Ok(Some(FoundTicket {
            ticket: self.ticket_ref(&id),
            origin_event_id: self
                .custom_field(ticket, &self.config.origin_event_field)
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError> {
        let marker = event_marker(event_id);
        for page in 1..=CONVERSATION_PAGES {
            let listed = self
                .send(
                    self.request(reqwest::Method::GET, &format!("/tickets/{}/conversations", ticket.id))
                        .query(&[("per_page", PER_PAGE.to_string()), ("page", page.to_string())]),
                )
                .await?;
            let conversations = listed.as_array().cloned().unwrap_or_default();
            if conversations.iter().any(|c| {
                [&c["body_text"], &c["body"]]
                    .into_iter()
                    .any(|text| text.as_str().is_some_and(|t| t.contains(&marker)))
            }) {
                return Ok(true);
            }
            if conversations.len() < PER_PAGE {
                break;
            }
        }
        Ok(false)
    }

    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        let mut fields = requester(event).ok_or_else(|| HelpdeskError::Rejected {
            status: 0,
            detail: "the event names no customer with an email, phone or platform id".into(),
        })?;
        let (files, listed) = split_attachments(event, LIMITS);
        fields.insert("subject".into(), json!(subject(event)));
        fields.insert(
            "description".into(),
            json!(html_body(
                &text_with_listed_attachments(event, &listed, "attachment"),
                &event.event_id
            )),
        );
        fields.insert("status".into(), json!(2));
        fields.insert("source".into(), json!(freshdesk_source(event.channel())));
        if let Some(priority) = routing.priority {
            fields.insert("priority".into(), json!(freshdesk_priority(priority)));
        }
        if let Some(group_id) = self.group_id(routing)? {
            fields.insert("group_id".into(), json!(group_id));
        }
        fields.insert("tags".into(), json!(ticket_tags(event, routing, |tag| tag.trim().to_lowercase())));
        let mut custom_fields = Map::new();
        for (name, value) in &routing.custom_fields {
            custom_fields.insert(name.clone(), json!(value));
        }
        custom_fields.insert(self.config.conversation_field.clone(), json!(event.conversation_id));
        custom_fields.insert(self.config.origin_event_field.clone(), json!(event.event_id));
        fields.insert("custom_fields".into(), Value::Object(custom_fields));
        let builder = self.request(reqwest::Method::POST, "/tickets");
        let created = self.send(self.with_payload(builder, &fields, &files, &event.event_id)).await?;
        let id = ticket_id(&created)
            .ok_or_else(|| HelpdeskError::Unavailable(format!("ticket created without an id in the response: {created}")))?;
        if let Some(requester) = created["requester_id"].as_u64() {
            self.requesters.lock().expect("requesters lock").insert(id.to_string(), requester);
        }
        Ok(self.ticket_ref(&id.to_string()))
    }

    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        let (files, listed) = split_attachments(event, LIMITS);
        let mut fields = Map::new();
        fields.insert(
            "body".into(),
            json!(html_body(
                &text_with_listed_attachments(event, &listed, "attachment"),
                &event.event_id
            )),
        );
        if event.direction() == Direction::Outbound {
            // What the team itself wrote elsewhere: for agents only, never mailed to the customer.
            fields.insert("private".into(), json!(true));
        } else {
            fields.insert("private".into(), json!(false));
            fields.insert("incoming".into(), json!(true));
            if self.config.notes_as_requester {
                fields.insert("user_id".into(), json!(self.requester_id(ticket).await?));
            }
        }
        let builder = self.request(reqwest::Method::POST, &format!("/tickets/{}/notes", ticket.id));
        self.send(self.with_payload(builder, &fields, &files, &event.event_id)).await?;
        Ok(())
    }
}
