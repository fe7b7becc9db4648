//! Zammad, through its REST API (`/api/v1/`, <https://docs.zammad.org/en/latest/api/intro.html>).
//!
//! Zammad has no idempotency key (its API introduction documents none; the `From` header only
//! acts on behalf of another user), so omni records its ids in Zammad and looks them up before
//! doing anything twice:
//! - ticket attribute `omni_conversation` (object manager, type text): the conversation id;
//! - ticket attribute `omni_origin_event` (object manager, type text): the event that opened the ticket;
//! - the last line of every article body: `[omni-event:<event id>]`.
//!
//! Create both attributes once (Admin > Objects > Ticket, or `POST /api/v1/object_manager_attributes`
//! then `POST /api/v1/object_manager_attributes_execute_migrations`). The readiness check fails
//! with a clear message while they are missing, when the token may read the object manager.
//!
//! A conversation is looked up with a condition search (`POST /api/v1/tickets/search` with a
//! `condition`): without a `query` Zammad answers from the database, not from the search index,
//! so a ticket created just before a crash is found at once.
//!
//! The customer becomes the ticket's customer with `customer_id: "guess:<email>"` (created when
//! unknown); a customer known only by phone or by a platform id gets an address under `.invalid`
//! (see [`super::requester::requestor`]). Customer messages are articles with sender
//! `Customer` (type `email`, `phone` for calls, `web` for the other channels; Zammad sends
//! nothing for customer articles); what the team wrote elsewhere (an outbound event) is an
//! internal note. Inline attachments travel in the article (base64), up to 20 MB per article;
//! the others are listed in the text.
//!
//! A mail whose HTML shows a JPEG or PNG it carries (`<img src="cid:…">`) becomes an HTML
//! article: the HTML cleaned (see `helpdesk::html::with_inline_images`), each such image a
//! `data:` URL in it, which Zammad turns into an inline image of the article
//! (`HtmlSanitizer.replace_inline_images` when it creates an article, in Zammad's
//! `app/controllers/application_controller/creates_ticket_articles.rb`); the other files go as
//! attachments. Any other mail is a text article (`text/plain`), without the quoted thread.

use std::fmt;

use async_trait::async_trait;
use omni_proto::v1::{Attachment, Channel, ConversationEvent, Direction, attachment::Content};
use omni_runtime::{Problems, Validate};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::html::{InlineHtml, escape, jpeg_or_png, text_to_html, with_inline_images};
use super::requester::{requestor, subject};
use super::{
    FoundTicket, Helpdesk, HelpdeskError, Priority, Routing, TicketRef, attachment_name, listed_attachments, split_attachments,
    text_with_listed_attachments, ticket_tags,
};

pub mod replies;
#[cfg(test)]
mod tests;

/// Largest total of attachment bytes sent with one article.
pub const MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;
/// The files sent with one message: [`MAX_ATTACHMENT_BYTES`] in all.
const LIMITS: super::AttachmentLimits = super::AttachmentLimits::per_message(MAX_ATTACHMENT_BYTES);
/// Longest ticket title (Zammad's `title` attribute holds 200 characters).
const MAX_TITLE_CHARS: usize = 200;

fn default_conversation_attribute() -> String {
    "omni_conversation".into()
}

fn default_origin_event_attribute() -> String {
    "omni_origin_event".into()
}

/// Zammad priority names for the routing priorities (Zammad ships `1 low`, `2 normal`, `3 high`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ZammadPriorities {
    /// For `low`.
    pub low: String,
    /// For `normal`.
    pub normal: String,
    /// For `high`.
    pub high: String,
    /// For `urgent` (Zammad has no fourth priority until one is added).
    pub urgent: String,
}

impl Default for ZammadPriorities {
    fn default() -> Self {
        Self {
            low: "1 low".into(),
            normal: "2 normal".into(),
            high: "3 high".into(),
            urgent: "3 high".into(),
        }
    }
}

impl ZammadPriorities {
    fn name(&self, priority: Priority) -> &str {
        match priority {
            Priority::Low => &self.low,
            Priority::Normal => &self.normal,
            Priority::High => &self.high,
            Priority::Urgent => &self.urgent,
        }
    }
}

/// `kind = "zammad"` destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZammadConfig {
    /// Zammad's URL; the API is at `<base_url>/api/v1/`.
    pub base_url: String,
    /// An access token (`Authorization: Token token=…`) of an agent with `ticket.agent` on the
    /// groups omni writes to (and `admin.object` to let the readiness check see the attributes).
    /// Never logged.
    pub token: String,
    /// Group (name) new tickets go to when the routing rule names none.
    pub group: String,
    /// Seconds per HTTP request.
    pub timeout_secs: u64,
    /// Name of the ticket attribute (object manager, text) holding the conversation id.
    #[serde(default = "default_conversation_attribute")]
    pub conversation_attribute: String,
    /// Name of the ticket attribute (object manager, text) holding the id of the opening event.
    #[serde(default = "default_origin_event_attribute")]
    pub origin_event_attribute: String,
    /// Zammad priority names for the routing priorities.
    #[serde(default)]
    pub priorities: ZammadPriorities,
    /// The "HMAC SHA1 Signature Token" of the Zammad webhook that tells omni-replies about
    /// agents' answers (see [`replies`]); unset: this destination's answers are not taken.
    #[serde(default)]
    pub reply_secret: Option<String>,
}

impl fmt::Debug for ZammadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZammadConfig")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("group", &self.group)
            .field("timeout_secs", &self.timeout_secs)
            .field("conversation_attribute", &self.conversation_attribute)
            .field("origin_event_attribute", &self.origin_event_attribute)
            .field("priorities", &self.priorities)
            .field("reply_secret", &self.reply_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl super::Destination for ZammadConfig {
    fn build(&self) -> Result<std::sync::Arc<dyn super::Helpdesk>, reqwest::Error> {
        Ok(std::sync::Arc::new(Zammad::new(self.clone())?))
    }

    fn reply_webhook(&self) -> Result<Option<std::sync::Arc<dyn super::replies::ReplyWebhook>>, reqwest::Error> {
        Ok(replies::ZammadReplies::new(self).map(|replies| std::sync::Arc::new(replies) as _))
    }
}

impl Validate for ZammadConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if reqwest::Url::parse(&self.base_url)
            .map(|url| !url.scheme().starts_with("http"))
            .unwrap_or(true)
        {
            problems.push(format!("{prefix}.base_url"), format!("`{}` is not an http(s) URL", self.base_url));
        }
        problems.check(!self.token.trim().is_empty(), format!("{prefix}.token"), "must not be empty");
        problems.check(!self.group.trim().is_empty(), format!("{prefix}.group"), "must not be empty");
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
        for (key, name) in [
            ("conversation_attribute", &self.conversation_attribute),
            ("origin_event_attribute", &self.origin_event_attribute),
        ] {
            // Zammad's rule for object attribute names.
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            problems.check(
                valid,
                format!("{prefix}.{key}"),
                format!("`{name}` is not an attribute name (lowercase letters, digits and `_`, starting with a letter)"),
            );
        }
        problems.check(
            self.conversation_attribute != self.origin_event_attribute,
            format!("{prefix}.origin_event_attribute"),
            "must differ from `conversation_attribute`",
        );
        for (key, name) in [
            ("low", &self.priorities.low),
            ("normal", &self.priorities.normal),
            ("high", &self.priorities.high),
            ("urgent", &self.priorities.urgent),
        ] {
            problems.check(!name.trim().is_empty(), format!("{prefix}.priorities.{key}"), "must not be empty");
        }
        super::replies::check_reply_secret(self.reply_secret.as_deref(), &format!("{prefix}.reply_secret"), problems);
    }
}

/// The Zammad adapter.
pub struct Zammad {
    config: ZammadConfig,
    api: String,
    client: reqwest::Client,
}

impl Zammad {
    /// Creates the adapter (no request is made).
    pub fn new(config: ZammadConfig) -> Result<Self, reqwest::Error> {
        let client = super::http_client(config.timeout_secs).build()?;
        let api = format!("{}/api/v1", config.base_url.trim_end_matches('/'));
        Ok(Self { config, api, client })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.api));
        match reqwest::header::HeaderValue::from_str(&format!("Token token={}", self.config.token)) {
            Ok(mut value) => {
                value.set_sensitive(true);
                builder.header(reqwest::header::AUTHORIZATION, value)
            }
            // A token with control characters: sent without, Zammad answers 401 (Misconfigured).
            Err(_) => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Value, HelpdeskError> {
        super::send(builder, |status, _, body| {
            let names_our_attributes = [&self.config.conversation_attribute, &self.config.origin_event_attribute]
                .iter()
                .any(|attribute| body.contains(&format!("'{attribute}'")) || body.contains(&format!("ticket.{attribute}")));
            (status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS && names_our_attributes).then(|| {
                HelpdeskError::Misconfigured(format!(
                    "Zammad refused the omni ticket attributes `{}`/`{}` (create them in the object manager): {}",
                    self.config.conversation_attribute,
                    self.config.origin_event_attribute,
                    body.chars().take(512).collect::<String>()
                ))
            })
        })
        .await?
        .json()
    }

    fn ticket_ref(&self, id: &str) -> TicketRef {
        TicketRef {
            id: id.to_owned(),
            url: format!("{}/#ticket/zoom/{id}", self.config.base_url.trim_end_matches('/')),
        }
    }

    /// The article for an event: the customer's message, or an internal note for what the team
    /// wrote elsewhere; the event marker as its last line.
    fn article(&self, event: &ConversationEvent) -> Map<String, Value> {
        let (files, listed) = split_attachments(event, LIMITS);
        let mut article = Map::new();
        if !event.subject.trim().is_empty() {
            article.insert("subject".into(), json!(event.subject));
        }
        let inline = with_inline_images(event, &files, jpeg_or_png);
        let (body, content_type) = match &inline {
            Some(inline) => (html_body(inline, &listed, &event.event_id), "text/html"),
            None => (
                format!(
                    "{}\n\n{}",
                    text_with_listed_attachments(event, &listed, "attachment"),
                    event_marker(&event.event_id)
                ),
                "text/plain",
            ),
        };
        article.insert("body".into(), json!(body));
        article.insert("content_type".into(), json!(content_type));
        if event.direction() == Direction::Outbound {
            article.insert("type".into(), json!("note"));
            article.insert("internal".into(), json!(true));
            article.insert("sender".into(), json!("Agent"));
        } else {
            let kind = article_type(event.channel());
            article.insert("type".into(), json!(kind));
            article.insert("internal".into(), json!(false));
            article.insert("sender".into(), json!("Customer"));
            // Zammad fills `from` itself for customer phone and web articles, not for emails.
            if kind == "email"
                && let Some(address) = requestor(event)
            {
                article.insert("from".into(), json!(address));
            }
        }
        let embedded = inline.map(|inline| inline.embedded).unwrap_or_default();
        let files: Vec<_> = files
            .iter()
            .enumerate()
            .filter(|(index, _)| !embedded.contains(index))
            .map(|(_, file)| file)
            .collect();
        if !files.is_empty() {
            let attachments: Vec<Value> = files
                .iter()
                .filter_map(|attachment| match &attachment.content {
                    Some(Content::Data(data)) => Some(json!({
                        "filename": attachment_name(attachment),
                        "data": base64(data),
                        "mime-type": if attachment.media_type.is_empty() { "application/octet-stream" } else { attachment.media_type.as_str() },
                    })),
                    _ => None,
                })
                .collect();
            article.insert("attachments".into(), Value::Array(attachments));
        }
        article
    }

    /// Tickets out of a search answer: an array with `expand=true`, else `assets.Ticket`.
    fn tickets_in(found: &Value) -> Vec<Value> {
        match found {
            Value::Array(tickets) => tickets.clone(),
            other => other["assets"]["Ticket"]
                .as_object()
                .map(|t| t.values().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// An HTML article: the mail's cleaned HTML with its images, then the files not sent (as in a
/// text article), then the event marker as the last paragraph.
fn html_body(inline: &InlineHtml, listed: &[&Attachment], event_id: &str) -> String {
    let mut body = inline.html.clone();
    if !listed.is_empty() {
        body.push_str(&format!("<p>{}</p>", text_to_html(&listed_attachments(listed, "attachment"))));
    }
    body.push_str(&format!("<p>{}</p>", escape(&event_marker(event_id))));
    body
}

/// The line recorded at the end of each article: how `has_event` finds an event again.
pub fn event_marker(event_id: &str) -> String {
    format!("[omni-event:{event_id}]")
}

/// The article type of a customer message on a channel: `email`, `phone` for calls, and `web`
/// (what customers write through Zammad's own web UI) for the other channels.
pub fn article_type(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Voice => "phone",
        _ => "web",
    }
}

/// Standard base64 with padding (RFC 4648), as Zammad's article `attachments[].data` wants.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn ticket_id(ticket: &Value) -> Option<u64> {
    ticket["id"].as_u64().or_else(|| ticket["id"].as_str()?.parse().ok())
}

#[async_trait]
impl Helpdesk for Zammad {
    fn attachment_limits(&self) -> Option<super::AttachmentLimits> {
        Some(LIMITS)
    }

    async fn check(&self) -> Result<(), HelpdeskError> {
        self.send(self.request(reqwest::Method::GET, "/users/me")).await?;
        let attributes = match self.send(self.request(reqwest::Method::GET, "/object_manager_attributes")).await {
            Ok(attributes) => attributes,
            // The token may not read the object manager (`admin.object`): nothing more to check.
            Err(HelpdeskError::Misconfigured(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        let names: Vec<&str> = attributes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|attribute| attribute["object"] == "Ticket")
            .filter_map(|attribute| attribute["name"].as_str())
            .collect();
        let missing: Vec<&str> = [&self.config.conversation_attribute, &self.config.origin_event_attribute]
            .into_iter()
            .map(String::as_str)
            .filter(|wanted| !names.contains(wanted))
            .collect();
        if !missing.is_empty() {
            return Err(HelpdeskError::Misconfigured(format!(
                "ticket attributes {missing:?} missing: create them (type text) in Zammad's object manager and run its migrations"
            )));
        }
        Ok(())
    }

    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        let mut condition = Map::new();
        condition.insert(
            format!("ticket.{}", self.config.conversation_attribute),
            json!({ "operator": "is", "value": conversation_id }),
        );
        let found = self
            .send(
                self.request(reqwest::Method::POST, "/tickets/search")
                    .query(&[("expand", "true")])
                    .json(&json!({ "condition": condition })),
            )
            .await?;
        let attribute = &self.config.conversation_attribute;
        // Several would mean someone else set our attribute by hand: take the oldest.
        let ticket = Self::tickets_in(&found)
            .into_iter()
            .filter(|t| t[attribute].as_str() == Some(conversation_id) && ticket_id(t).is_some())
            .min_by_key(ticket_id);
        Ok(ticket.map(|ticket| FoundTicket {
            ticket: self.ticket_ref(&ticket_id(&ticket).unwrap_or_default().to_string()),
            origin_event_id: ticket[&self.config.origin_event_attribute].as_str().unwrap_or_default().to_owned(),
        }))
    }

    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError> {
        // Escaped as the last paragraph of an HTML article (the same for the ids omni makes).
        let (marker, in_html) = (event_marker(event_id), escape(&event_marker(event_id)));
        let articles = self
            .send(self.request(reqwest::Method::GET, &format!("/ticket_articles/by_ticket/{}", ticket.id)))
            .await?;
        Ok(articles.as_array().into_iter().flatten().any(|article| {
            article["body"]
                .as_str()
                .is_some_and(|body| body.contains(&marker) || body.contains(&in_html))
        }))
    }

    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        let customer = requestor(event).ok_or_else(|| HelpdeskError::Rejected {
            status: 0,
            detail: "the event names no customer with an email, phone or platform id".into(),
        })?;
        let mut ticket = Map::new();
        ticket.insert(
            "title".into(),
            json!(subject(event).chars().take(MAX_TITLE_CHARS).collect::<String>()),
        );
        ticket.insert("group".into(), json!(routing.group.as_deref().unwrap_or(&self.config.group)));
        ticket.insert("customer_id".into(), json!(format!("guess:{customer}")));
        if let Some(priority) = routing.priority {
            ticket.insert("priority".into(), json!(self.config.priorities.name(priority)));
        }
        ticket.insert(
            "tags".into(),
            json!(ticket_tags(event, routing, |tag| tag.replace(',', " ").trim().to_lowercase()).join(",")),
        );
        for (name, value) in &routing.custom_fields {
            ticket.insert(name.clone(), json!(value));
        }
        ticket.insert(self.config.conversation_attribute.clone(), json!(event.conversation_id));
        ticket.insert(self.config.origin_event_attribute.clone(), json!(event.event_id));
        let mut article = self.article(event);
        article.insert("subject".into(), json!(subject(event)));
        ticket.insert("article".into(), Value::Object(article));
        let created = self.send(self.request(reqwest::Method::POST, "/tickets").json(&ticket)).await?;
        let id = ticket_id(&created)
            .ok_or_else(|| HelpdeskError::Unavailable(format!("ticket created without an id in the response: {created}")))?;
        Ok(self.ticket_ref(&id.to_string()))
    }

    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        let mut article = self.article(event);
        let id = ticket.id.parse::<u64>().map(|id| json!(id)).unwrap_or_else(|_| json!(ticket.id));
        article.insert("ticket_id".into(), id);
        self.send(self.request(reqwest::Method::POST, "/ticket_articles").json(&article))
            .await?;
        Ok(())
    }
}
