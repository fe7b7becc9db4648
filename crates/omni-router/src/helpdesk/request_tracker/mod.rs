//! Request Tracker 5, through its REST2 API (`/REST/2.0/`).
//!
//! What omni records in RT, so the router can find its work again after a crash:
//! - ticket custom field `omni Conversation`: the conversation id (found with TicketSQL);
//! - ticket custom field `omni Origin Event`: the event that opened the ticket;
//! - transaction custom field `omni Event` on each correspondence: its event id (found with
//!   TransactionSQL).
//!
//! Load them once with `rt-setup-database --action insert --datafile
//! deploy/request-tracker/omni-initialdata`; the router's readiness check fails with a clear
//! message until they exist.
//!
//! Files whose bytes came with the event (an email's attachments up to the normalizer's inline
//! limit) are REST2 `Attachments` of the ticket's create or correspondence, up to RT's default
//! `$MaxAttachmentSize` in all; the others are listed under the text with where to fetch them.
//!
//! The customer becomes the ticket's requestor by email address. A customer known only by phone
//! becomes the address `<E.164 number>@phone.invalid` (the `.invalid` top-level domain can never
//! receive mail, RFC 2606), so agents see the number and RT never mails a stranger.

pub mod replies;

use async_trait::async_trait;
use base64::Engine as _;
use omni_proto::v1::ConversationEvent;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;
use serde_json::{Value, json};

use super::requester::{requestor, subject};
use super::{FoundTicket, Helpdesk, HelpdeskError, Priority, Routing, TicketRef};

/// Custom field holding the conversation id on tickets.
pub const CF_CONVERSATION: &str = "omni Conversation";
/// Custom field holding the opening event id on tickets.
pub const CF_ORIGIN_EVENT: &str = "omni Origin Event";
/// Transaction custom field holding the event id of each correspondence.
pub const CF_EVENT: &str = "omni Event";
/// Ticket custom field (multiple values) with the ticket's tags: `channel-<name>`, the problem
/// areas the normalizer found, the rule's tags. Optional: used when RT has it.
pub const CF_TAGS: &str = "omni Tags";
/// Ticket custom field with the opening message's language. Optional.
pub const CF_LANGUAGE: &str = "omni Language";
/// Ticket custom field (multiple values) with the order numbers the customer mentioned. Optional.
pub const CF_ORDER_NUMBERS: &str = "omni Order Numbers";
/// The optional fields, filled only where RT has them (an RT set up before they existed).
const OPTIONAL_FIELDS: [&str; 3] = [CF_TAGS, CF_LANGUAGE, CF_ORDER_NUMBERS];

/// `kind = "request_tracker"` destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTrackerConfig {
    /// RT's base URL; REST2 is at `<base_url>/REST/2.0/`.
    pub base_url: String,
    /// User for basic auth (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic auth.
    #[serde(default)]
    pub password: Option<String>,
    /// An RT auth token, instead of username and password.
    #[serde(default)]
    pub token: Option<String>,
    /// The RT user omni writes as, when `token` is used: its own correspondence is never taken
    /// as an agent's answer. Default: `username`.
    #[serde(default)]
    pub api_user: Option<String>,
    /// Queue new tickets go to.
    pub queue: String,
    /// Seconds per HTTP request.
    pub timeout_secs: u64,
    /// RT's `$rtname`: a subject carrying `[<subject_tag> #<id>]` (what RT puts in the subject of
    /// its mail) joins ticket `<id>`. Empty: subjects are not looked at.
    #[serde(default)]
    pub subject_tag: String,
}

impl std::fmt::Debug for RequestTrackerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrackerConfig")
            .field("base_url", &self.base_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("api_user", &self.api_user)
            .field("queue", &self.queue)
            .field("timeout_secs", &self.timeout_secs)
            .field("subject_tag", &self.subject_tag)
            .finish()
    }
}

impl super::Destination for RequestTrackerConfig {
    fn build(&self) -> Result<std::sync::Arc<dyn super::Helpdesk>, reqwest::Error> {
        Ok(std::sync::Arc::new(RequestTracker::new(self.clone())?))
    }

    fn reply_poller(&self) -> Result<Option<std::sync::Arc<dyn super::replies::ReplyPoller>>, reqwest::Error> {
        Ok(Some(std::sync::Arc::new(replies::RtReplies::new(RequestTracker::new(
            self.clone(),
        )?))))
    }
}

impl Validate for RequestTrackerConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if reqwest::Url::parse(&self.base_url)
            .map(|url| !url.scheme().starts_with("http"))
            .unwrap_or(true)
        {
            problems.push(format!("{prefix}.base_url"), format!("`{}` is not an http(s) URL", self.base_url));
        }
        let basic = self.username.is_some() && self.password.is_some();
        problems.check(
            basic ^ self.token.is_some(),
            prefix,
            "set either `token`, or `username` and `password`",
        );
        problems.check(!self.queue.is_empty(), format!("{prefix}.queue"), "must not be empty");
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// The Request Tracker adapter.
pub struct RequestTracker {
    config: RequestTrackerConfig,
    api: String,
    client: reqwest::Client,
    /// Which of [`OPTIONAL_FIELDS`] RT has, found by `check`; none until then.
    optional_fields: std::sync::OnceLock<Vec<&'static str>>,
}

impl RequestTracker {
    /// Creates the adapter (no request is made).
    pub fn new(config: RequestTrackerConfig) -> Result<Self, reqwest::Error> {
        let client = super::http_client(config.timeout_secs).build()?;
        let api = format!("{}/REST/2.0", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            api,
            client,
            optional_fields: std::sync::OnceLock::new(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.api));
        match (&self.config.token, &self.config.username) {
            (Some(token), _) => builder.header(reqwest::header::AUTHORIZATION, format!("token {token}")),
            (None, Some(user)) => builder.basic_auth(user, self.config.password.as_deref()),
            (None, None) => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Value, HelpdeskError> {
        super::send(builder, super::no_refinement).await?.json_required()
    }

    fn ticket_ref(&self, id: &str) -> TicketRef {
        TicketRef {
            id: id.to_owned(),
            url: format!("{}/Ticket/Display.html?id={id}", self.config.base_url.trim_end_matches('/')),
        }
    }

    async fn search_total(&self, path: &str, query: &str) -> Result<(u64, Value), HelpdeskError> {
        let found = self
            .send(self.request(reqwest::Method::GET, path).query(&[("query", query)]))
            .await?;
        Ok((found["total"].as_u64().or_else(|| found["count"].as_u64()).unwrap_or(0), found))
    }
}

/// The ticket number in `[<tag> #<id>]` inside a subject, when there is one.
pub fn ticket_number_in_subject(tag: &str, subject: &str) -> Option<u64> {
    if tag.is_empty() {
        return None;
    }
    let opening = format!("[{tag} #");
    let mut rest = subject;
    while let Some(start) = rest.find(&opening) {
        let after = &rest[start + opening.len()..];
        let digits: &str = &after[..after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len())];
        if !digits.is_empty() && after[digits.len()..].starts_with(']') {
            return digits.parse().ok();
        }
        rest = after;
    }
    None
}

/// Quotes a value for TicketSQL / TransactionSQL.
fn sql_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// RT's numeric priority (0-100, higher first) for a routing priority.
fn rt_priority(priority: Priority) -> u8 {
    match priority {
        Priority::Low => 25,
        Priority::Normal => 50,
        Priority::High => 75,
        Priority::Urgent => 100,
    }
}

/// A file name as RT 5's REST2 needs it: its UTF-8 bytes, one character each. REST2 gives
/// `FileName` to MIME::Entity as it came from JSON, and RT later reads the name back with
/// `Encode::decode("UTF-8", ...)` (`RT::Util::mime_recommended_filename`), which dies on a
/// character above U+00FF ("Wide character", a 500 and a lost transaction) and turns octets
/// into the right name. Checked against Debian's RT 5.0 with Turkish, Arabic and `€` names
/// (tests/tests/email_corpus.rs).
fn as_octets(name: &str) -> String {
    name.bytes().map(char::from).collect()
}

/// RT's default `$MaxAttachmentSize` (10 MB): files whose bytes travel with the event, up to
/// this much in all, become RT attachments; the rest are listed in the text.
pub const MAX_ATTACHMENT_BYTES: u64 = 10_000_000;
/// The files sent with one message: [`MAX_ATTACHMENT_BYTES`] in all.
const LIMITS: super::AttachmentLimits = super::AttachmentLimits::per_message(MAX_ATTACHMENT_BYTES);

/// The REST2 `Content` and `Attachments` of an event: what the sender wrote, then what came with
/// it and is not attached (with where to fetch it); the files as `FileName`, `FileType` and
/// base64 `FileContent`, as REST2's create, correspond and comment take them.
fn content_and_files(event: &ConversationEvent) -> (String, Vec<Value>) {
    let (files, listed) = super::split_attachments(event, LIMITS);
    let content = super::text_with_listed_attachments(event, &listed, "(unnamed)");
    let files = files
        .into_iter()
        .filter_map(|attachment| match &attachment.content {
            Some(omni_proto::v1::attachment::Content::Data(data)) => Some(json!({
                "FileName": as_octets(super::attachment_name(attachment)),
                "FileType": if attachment.media_type.is_empty() { "application/octet-stream" } else { &attachment.media_type },
                "FileContent": base64::engine::general_purpose::STANDARD.encode(data),
            })),
            _ => None,
        })
        .collect();
    (content, files)
}

#[async_trait]
impl Helpdesk for RequestTracker {
    fn attachment_limits(&self) -> Option<super::AttachmentLimits> {
        Some(LIMITS)
    }

    async fn check(&self) -> Result<(), HelpdeskError> {
        let queue = self
            .send(self.request(reqwest::Method::GET, &format!("/queue/{}", self.config.queue)))
            .await
            .map_err(|error| match error {
                HelpdeskError::Rejected { status: 404, .. } => {
                    HelpdeskError::Misconfigured(format!("queue `{}` does not exist", self.config.queue))
                }
                other => other,
            })?;
        if queue["id"].is_null() {
            return Err(HelpdeskError::Misconfigured(format!(
                "queue `{}` does not exist",
                self.config.queue
            )));
        }
        // A JSON search (POST); a plain GET of /customfields lists nothing.
        let search = json!([{ "field": "Name", "operator": "LIKE", "value": "omni" }]);
        let fields = self
            .send(
                self.request(reqwest::Method::POST, "/customfields")
                    .query(&[("fields", "Name"), ("per_page", "100")])
                    .json(&search),
            )
            .await?;
        let names: Vec<&str> = fields["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["Name"].as_str())
            .collect();
        let missing: Vec<&str> = [CF_CONVERSATION, CF_ORIGIN_EVENT, CF_EVENT]
            .into_iter()
            .filter(|cf| !names.contains(cf))
            .collect();
        if !missing.is_empty() {
            return Err(HelpdeskError::Misconfigured(format!(
                "custom fields {missing:?} missing: load deploy/request-tracker/omni-initialdata with rt-setup-database"
            )));
        }
        let (present, absent): (Vec<&'static str>, Vec<&'static str>) = OPTIONAL_FIELDS.into_iter().partition(|cf| names.contains(cf));
        if !absent.is_empty() {
            tracing::warn!(
                fields = ?absent,
                "RT lacks these omni custom fields, so new tickets do not record them; create them as in deploy/request-tracker/omni-initialdata"
            );
        }
        let _ = self.optional_fields.set(present);
        Ok(())
    }

    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        let query = format!("'CF.{{{CF_CONVERSATION}}}' = {}", sql_quote(conversation_id));
        let (total, found) = self.search_total("/tickets", &query).await?;
        if total == 0 {
            return Ok(None);
        }
        // Several would mean someone else opened one by hand with our field: take the oldest.
        let id = found["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["id"].as_str()?.parse::<u64>().ok())
            .min();
        let Some(id) = id else { return Ok(None) };
        let ticket = self.send(self.request(reqwest::Method::GET, &format!("/ticket/{id}"))).await?;
        let origin_event_id = ticket["CustomFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|cf| cf["name"] == CF_ORIGIN_EVENT)
            .and_then(|cf| cf["values"].get(0))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Some(FoundTicket {
            ticket: self.ticket_ref(&id.to_string()),
            origin_event_id,
        }))
    }

    fn ticket_reference(&self, ticket_id: &str) -> String {
        let tag = &self.config.subject_tag;
        if tag.is_empty() {
            String::new()
        } else {
            format!("[{tag} #{ticket_id}]")
        }
    }

    async fn ticket_in_subject(&self, subject: &str) -> Result<Option<TicketRef>, HelpdeskError> {
        let Some(id) = ticket_number_in_subject(&self.config.subject_tag, subject) else {
            return Ok(None);
        };
        match self.send(self.request(reqwest::Method::GET, &format!("/ticket/{id}"))).await {
            Ok(_) => Ok(Some(self.ticket_ref(&id.to_string()))),
            Err(HelpdeskError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError> {
        let query = format!(
            "ObjectType = 'RT::Ticket' AND ObjectId = {} AND 'CF.{{{CF_EVENT}}}' = {}",
            sql_quote(&ticket.id),
            sql_quote(event_id)
        );
        Ok(self.search_total("/transactions", &query).await?.0 > 0)
    }

    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        let requestor = requestor(event).ok_or_else(|| HelpdeskError::Rejected {
            status: 0,
            detail: "the event names no customer with an email or phone".into(),
        })?;
        // RT has no tags: the tags, language and order numbers go into omni's optional custom
        // fields where RT has them, and a rule's custom fields as it names them. The group is
        // the queue.
        let mut custom_fields = serde_json::Map::new();
        for (name, value) in &routing.custom_fields {
            custom_fields.insert(name.clone(), json!(value));
        }
        custom_fields.insert(CF_CONVERSATION.into(), json!(event.conversation_id));
        custom_fields.insert(CF_ORIGIN_EVENT.into(), json!(event.event_id));
        for field in self.optional_fields.get().into_iter().flatten() {
            let value = match *field {
                CF_TAGS => json!(super::ticket_tags(event, routing, |tag| tag.trim().to_lowercase())),
                CF_LANGUAGE if !event.language.is_empty() => json!(event.language),
                CF_ORDER_NUMBERS if !event.order_numbers.is_empty() => json!(event.order_numbers),
                _ => continue,
            };
            custom_fields.insert((*field).into(), value);
        }
        let (content, files) = content_and_files(event);
        let mut body = json!({
            "Queue": routing.group.as_deref().unwrap_or(&self.config.queue),
            "Subject": subject(event),
            "Requestor": requestor,
            "Content": content,
            "ContentType": "text/plain",
            "CustomFields": custom_fields,
        });
        if !files.is_empty() {
            body["Attachments"] = json!(files);
        }
        if let Some(priority) = routing.priority {
            body["Priority"] = json!(rt_priority(priority));
        }
        let created = self.send(self.request(reqwest::Method::POST, "/ticket").json(&body)).await?;
        let id = created["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| created["id"].as_u64().map(|n| n.to_string()));
        id.map(|id| self.ticket_ref(&id))
            .ok_or_else(|| HelpdeskError::Unavailable(format!("ticket created without an id in the response: {created}")))
    }

    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        let (content, files) = content_and_files(event);
        let mut body = json!({
            "Content": content,
            "ContentType": "text/plain",
            "TxnCustomFields": { CF_EVENT: event.event_id },
        });
        if !files.is_empty() {
            body["Attachments"] = json!(files);
        }
        // What the team itself wrote elsewhere (an Aircall call comment) is an internal comment,
        // never correspondence RT would send to the customer.
        let kind = if event.direction() == omni_proto::v1::Direction::Outbound {
            "comment"
        } else {
            "correspond"
        };
        self.send(
            self.request(reqwest::Method::POST, &format!("/ticket/{}/{kind}", ticket.id))
                .json(&body),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helpdesk::requester::tests::event_with;

    #[test]
    fn files_with_their_bytes_are_attached_and_the_rest_listed() {
        let mut event = event_with(vec![], "x", "Zie bijlage");
        assert_eq!(content_and_files(&event), ("Zie bijlage".to_owned(), vec![]));
        event.attachments = vec![
            omni_proto::v1::Attachment {
                name: "factuur.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: 2048,
                ..Default::default()
            },
            omni_proto::v1::Attachment {
                name: "message.eml".into(),
                media_type: "message/rfc822".into(),
                size_bytes: 31_457_280,
                content: Some(omni_proto::v1::attachment::Content::Reference(
                    "imap://support/INBOX;UIDVALIDITY=7/;UID=42".into(),
                )),
                ..Default::default()
            },
        ];
        event.attachments.push(omni_proto::v1::Attachment {
            name: "foto.jpg".into(),
            media_type: "image/jpeg".into(),
            size_bytes: 3,
            content: Some(omni_proto::v1::attachment::Content::Data(b"\xff\xd8\xff".to_vec())),
            ..Default::default()
        });
        let (content, files) = content_and_files(&event);
        assert_eq!(
            content,
            "Zie bijlage\n\n-- \nAttachments:\n- factuur.pdf (application/pdf, 2048 bytes)\n- message.eml (message/rfc822, 31457280 bytes): imap://support/INBOX;UIDVALIDITY=7/;UID=42"
        );
        assert_eq!(
            files,
            [json!({"FileName": "foto.jpg", "FileType": "image/jpeg", "FileContent": "/9j/"})]
        );
        assert_eq!(as_octets("ş.pdf"), "\u{c5}\u{9f}.pdf");
    }

    #[test]
    fn ticket_reference_in_subject() {
        let tag = "omni-local";
        assert_eq!(ticket_number_in_subject(tag, "Re: [omni-local #42] Siparişim nerede?"), Some(42));
        assert_eq!(ticket_number_in_subject(tag, "AW: [omni-local #] x [omni-local #7]"), Some(7));
        assert_eq!(ticket_number_in_subject(tag, "[other #42] x"), None);
        assert_eq!(ticket_number_in_subject(tag, "[omni-local #42 x"), None);
        assert_eq!(ticket_number_in_subject("", "[ #42]"), None);
    }

    #[test]
    fn sql_values_are_quoted() {
        assert_eq!(sql_quote("a'b"), "'a\\'b'");
    }
}
