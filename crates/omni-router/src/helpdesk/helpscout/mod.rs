//! Help Scout, through the Mailbox API 2.0 (`https://api.helpscout.net/v2/`), authenticated with
//! the OAuth2 client credentials flow.
//!
//! Help Scout has no idempotency key, so omni records its ids in Help Scout and looks them up:
//! - conversation custom field `conversation_field_id` (a single-line field, per mailbox): the
//!   omni conversation id, found with `GET /v2/conversations?customFieldsByIds=<field>:<id>`;
//! - conversation custom field `origin_event_field_id`: the event that opened the conversation;
//! - the last line of every thread omni adds, `omni-event: <event id>`, found by listing the
//!   conversation's threads (`GET /v2/conversations/<id>/threads`).
//!
//! Create the two single-line custom fields (for example "omni Conversation" and "omni Origin
//! Event") in every mailbox omni writes to, and put their ids in the configuration; the router's
//! readiness check fails with a clear message until they exist.
//!
//! Help Scout needs an email address (or a customer id) for every customer. A customer known only
//! by phone becomes `<E.164 number>@phone.invalid`, with the number as the customer's phone; one
//! known by a platform id becomes `<id>@<platform>.invalid` (see
//! [`requester::requestor`](super::requester::requestor)): addresses that can never
//! receive mail (RFC 2606).
//!
//! What goes where: inbound messages become customer threads, inbound calls phone threads, and
//! what the team itself wrote elsewhere (`Direction::Outbound`) internal notes: omni never creates
//! a reply thread, which Help Scout would mail to the customer. Help Scout has no ticket priority:
//! a routing priority other than normal becomes the tag `priority-<level>`.
//!
//! Thread text is HTML (escaped text, line breaks as `<br>`). Attachments carried inline within
//! `max_attachment_bytes` are uploaded with the thread; the others are listed in its text, with a
//! signed link to each when `[objects]` links are configured.
//!
//! A limit to know: Help Scout's conversation search is an index, updated shortly after a write.
//! A router that crashed after creating a conversation and restarts within that delay may not
//! find it and create a second one.

pub mod replies;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use omni_proto::v1::attachment::Content;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Channel, ConversationEvent, Direction, participant::Role};
use omni_runtime::{Problems, Validate};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{escape, text_to_html};
use super::requester::{requestor, subject};
use super::{Answer, FoundTicket, Helpdesk, HelpdeskError, Priority, Routing, TicketRef, error_for_status, error_for_transport};

/// What starts the line recording the event id in each thread omni adds.
pub const EVENT_MARKER: &str = "omni-event: ";

/// `kind = "help_scout"` destination.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpScoutConfig {
    /// API base URL, without `/v2`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// OAuth2 token endpoint; default `<base_url>/v2/oauth2/token`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Where people open conversations: links are `<web_url>/conversation/<id>`.
    #[serde(default = "default_web_url")]
    pub web_url: String,
    /// The OAuth2 application's App ID (Your Profile > My Apps).
    pub client_id: String,
    /// The OAuth2 application's App Secret. Never logged.
    pub client_secret: String,
    /// The mailbox new conversations go to when the routing rule names none.
    pub mailbox_id: u64,
    /// Id of the default mailbox's single-line custom field holding the omni conversation id.
    pub conversation_field_id: u64,
    /// Id of the default mailbox's single-line custom field holding the opening event id.
    pub origin_event_field_id: u64,
    /// Other mailboxes routing rules may name (by this key or by mailbox id), each with its own
    /// omni custom fields (Help Scout custom fields belong to one mailbox).
    #[serde(default)]
    pub mailboxes: BTreeMap<String, HelpScoutMailbox>,
    /// Seconds per HTTP request.
    pub timeout_secs: u64,
    /// Largest attachment uploaded with a thread, in bytes; larger ones are listed in the text.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: u64,
    /// The secret key of the Help Scout webhook that tells omni-replies about agents' replies
    /// (see [`replies`]); unset: this destination's answers are not taken.
    #[serde(default)]
    pub reply_secret: Option<String>,
}

/// A mailbox besides the default one.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HelpScoutMailbox {
    /// The mailbox id.
    pub mailbox_id: u64,
    /// Its custom field holding the omni conversation id.
    pub conversation_field_id: u64,
    /// Its custom field holding the opening event id.
    pub origin_event_field_id: u64,
}

fn default_base_url() -> String {
    "https://api.helpscout.net".into()
}

fn default_web_url() -> String {
    "https://secure.helpscout.net".into()
}

fn default_max_attachment_bytes() -> u64 {
    // Help Scout takes attachments of up to 10 MB.
    10_000_000
}

impl fmt::Debug for HelpScoutConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelpScoutConfig")
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("web_url", &self.web_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("mailbox_id", &self.mailbox_id)
            .field("conversation_field_id", &self.conversation_field_id)
            .field("origin_event_field_id", &self.origin_event_field_id)
            .field("mailboxes", &self.mailboxes)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_attachment_bytes", &self.max_attachment_bytes)
            .field("reply_secret", &self.reply_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn check_url(value: &str, key: String, problems: &mut Problems) {
    if reqwest::Url::parse(value)
        .map(|url| !url.scheme().starts_with("http"))
        .unwrap_or(true)
    {
        problems.push(key, format!("`{value}` is not an http(s) URL"));
    }
}

fn check_mailbox(mailbox: Mailbox, prefix: &str, problems: &mut Problems) {
    problems.check(mailbox.id > 0, format!("{prefix}mailbox_id"), "must be a Help Scout mailbox id");
    problems.check(
        mailbox.conversation_field > 0,
        format!("{prefix}conversation_field_id"),
        "must be the id of a single-line custom field of the mailbox",
    );
    problems.check(
        mailbox.origin_field > 0,
        format!("{prefix}origin_event_field_id"),
        "must be the id of a single-line custom field of the mailbox",
    );
    problems.check(
        mailbox.conversation_field != mailbox.origin_field,
        format!("{prefix}origin_event_field_id"),
        "must differ from conversation_field_id",
    );
}

impl super::Destination for HelpScoutConfig {
    fn build(&self) -> Result<std::sync::Arc<dyn super::Helpdesk>, reqwest::Error> {
        Ok(std::sync::Arc::new(HelpScout::new(self.clone())?))
    }

    fn reply_webhook(&self) -> Result<Option<std::sync::Arc<dyn super::replies::ReplyWebhook>>, reqwest::Error> {
        Ok(replies::HelpScoutReplies::new(self)?.map(|replies| std::sync::Arc::new(replies) as _))
    }
}

impl Validate for HelpScoutConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_url(&self.base_url, format!("{prefix}.base_url"), problems);
        if let Some(token_url) = &self.token_url {
            check_url(token_url, format!("{prefix}.token_url"), problems);
        }
        check_url(&self.web_url, format!("{prefix}.web_url"), problems);
        problems.check(!self.client_id.is_empty(), format!("{prefix}.client_id"), "must not be empty");
        problems.check(
            !self.client_secret.is_empty(),
            format!("{prefix}.client_secret"),
            "must not be empty",
        );
        check_mailbox(self.default_mailbox(), &format!("{prefix}."), problems);
        let mut seen = vec![self.mailbox_id];
        for (name, mailbox) in &self.mailboxes {
            let key = format!("{prefix}.mailboxes.{name}.");
            check_mailbox(Mailbox::from(mailbox), &key, problems);
            problems.check(
                !seen.contains(&mailbox.mailbox_id),
                format!("{key}mailbox_id"),
                "is configured twice",
            );
            problems.check(
                name.parse::<u64>().is_err(),
                format!("{prefix}.mailboxes.{name}"),
                "name mailboxes with words: a number here would be read as a mailbox id",
            );
            seen.push(mailbox.mailbox_id);
        }
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
        problems.check(
            self.max_attachment_bytes <= 10_000_000,
            format!("{prefix}.max_attachment_bytes"),
            "Help Scout takes attachments of 10 MB at most",
        );
        super::replies::check_reply_secret(self.reply_secret.as_deref(), &format!("{prefix}.reply_secret"), problems);
    }
}

impl HelpScoutConfig {
    fn default_mailbox(&self) -> Mailbox {
        Mailbox {
            id: self.mailbox_id,
            conversation_field: self.conversation_field_id,
            origin_field: self.origin_event_field_id,
        }
    }
}

/// A mailbox omni writes to, with its omni custom fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mailbox {
    id: u64,
    conversation_field: u64,
    origin_field: u64,
}

impl From<&HelpScoutMailbox> for Mailbox {
    fn from(mailbox: &HelpScoutMailbox) -> Self {
        Self {
            id: mailbox.mailbox_id,
            conversation_field: mailbox.conversation_field_id,
            origin_field: mailbox.origin_event_field_id,
        }
    }
}

/// An access token and when to fetch the next one.
struct Token {
    value: String,
    refresh_at: Instant,
}

/// The id of what a POST created, from the `Resource-ID` header.
fn resource_id(answer: &Answer) -> Option<String> {
    let id = answer.headers.get("resource-id")?.to_str().ok()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_owned())
}

/// The Help Scout adapter.
pub struct HelpScout {
    config: HelpScoutConfig,
    api: String,
    token_url: String,
    web_url: String,
    client: reqwest::Client,
    token: tokio::sync::Mutex<Option<Token>>,
    /// Custom field names by mailbox, to resolve routing fields given by name.
    field_names: tokio::sync::Mutex<HashMap<u64, Vec<(u64, String)>>>,
}

/// The longest margin before expiry at which the token is fetched again.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl HelpScout {
    /// Creates the adapter (no request is made).
    pub fn new(config: HelpScoutConfig) -> Result<Self, reqwest::Error> {
        let client = super::http_client(config.timeout_secs).build()?;
        let api = config.base_url.trim_end_matches('/').to_owned();
        let token_url = config.token_url.clone().unwrap_or_else(|| format!("{api}/v2/oauth2/token"));
        let web_url = config.web_url.trim_end_matches('/').to_owned();
        Ok(Self {
            config,
            api,
            token_url,
            web_url,
            client,
            token: tokio::sync::Mutex::new(None),
            field_names: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The default mailbox first, then the others.
    fn mailboxes(&self) -> impl Iterator<Item = Mailbox> + '_ {
        std::iter::once(self.config.default_mailbox()).chain(self.config.mailboxes.values().map(Mailbox::from))
    }

    /// The mailbox a routing group names: a key of `mailboxes` or a configured mailbox id.
    fn mailbox_for(&self, group: Option<&str>) -> Result<Mailbox, HelpdeskError> {
        let Some(group) = group.map(str::trim).filter(|g| !g.is_empty()) else {
            return Ok(self.config.default_mailbox());
        };
        if let Some(mailbox) = self.config.mailboxes.get(group) {
            return Ok(mailbox.into());
        }
        group
            .parse::<u64>()
            .ok()
            .and_then(|id| self.mailboxes().find(|m| m.id == id))
            .ok_or_else(|| {
                HelpdeskError::Misconfigured(format!(
                    "routing names mailbox `{group}`, which is not configured for this destination (add it under `mailboxes` with its omni custom fields)"
                ))
            })
    }

    fn ticket_ref(&self, id: &str) -> TicketRef {
        TicketRef {
            id: id.to_owned(),
            url: format!("{}/conversation/{id}", self.web_url),
        }
    }

    /// A valid access token: the cached one, or a new one when it is about to expire or `stale`
    /// (the API refused it) is the one cached.
    async fn access_token(&self, stale: Option<&str>) -> Result<String, HelpdeskError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
            && stale != Some(token.value.as_str())
        {
            return Ok(token.value.clone());
        }
        *cached = None;
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
        });
        let started = Instant::now();
        let response = self
            .client
            .post(&self.token_url)
            .json(&body)
            .send()
            .await
            .map_err(error_for_transport)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(error_for_transport)?;
        if matches!(status.as_u16(), 400 | 401 | 403) {
            return Err(HelpdeskError::Misconfigured(format!(
                "Help Scout refused the client credentials (status {status}): check client_id and client_secret"
            )));
        }
        if !status.is_success() {
            return Err(error_for_status(status, retry_after.as_ref(), &text));
        }
        let granted: Value = serde_json::from_str(&text)
            .map_err(|error| HelpdeskError::Unavailable(format!("Help Scout token response is not json: {error}")))?;
        let value = granted["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HelpdeskError::Unavailable("Help Scout token response has no access_token".into()))?
            .to_owned();
        let lifetime = Duration::from_secs(granted["expires_in"].as_u64().unwrap_or(0));
        let margin = (lifetime / 2).min(TOKEN_REFRESH_MARGIN);
        *cached = Some(Token {
            value: value.clone(),
            refresh_at: started + lifetime - margin,
        });
        Ok(value)
    }

    /// One API call; a 401 fetches a new token and tries once more.
    async fn call(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Answer, HelpdeskError> {
        let url = format!("{}{path}", self.api);
        let mut refused: Option<String> = None;
        loop {
            let token = self.access_token(refused.as_deref()).await?;
            let mut builder = self.client.request(method.clone(), &url).bearer_auth(&token);
            if !query.is_empty() {
                builder = builder.query(query);
            }
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let token_refused = AtomicBool::new(false);
            let answer = super::send(builder, |status, headers, body| {
                token_refused.store(status == reqwest::StatusCode::UNAUTHORIZED, Ordering::Relaxed);
                Some(error_for_status(status, retry_after(headers).as_ref(), body))
            })
            .await;
            if answer.is_err() && token_refused.load(Ordering::Relaxed) && refused.is_none() {
                refused = Some(token);
                continue;
            }
            return answer;
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, HelpdeskError> {
        self.call(Method::GET, path, query, None).await?.json_required()
    }

    /// The custom fields of a mailbox, as `(id, name)`.
    async fn mailbox_fields(&self, mailbox: u64) -> Result<Vec<(u64, String)>, HelpdeskError> {
        let mut fields = Vec::new();
        let mut page = 1u64;
        loop {
            let listed = self
                .get(&format!("/v2/mailboxes/{mailbox}/fields"), &[("page", page.to_string())])
                .await
                .map_err(|error| match error {
                    HelpdeskError::Rejected { status: 404, .. } => {
                        HelpdeskError::Misconfigured(format!("Help Scout mailbox {mailbox} does not exist"))
                    }
                    other => other,
                })?;
            for field in embedded(&listed, "fields") {
                if let Some(id) = field["id"].as_u64() {
                    fields.push((id, field["name"].as_str().unwrap_or_default().to_owned()));
                }
            }
            if page >= listed["page"]["totalPages"].as_u64().unwrap_or(1) || page >= 20 {
                break;
            }
            page += 1;
        }
        self.field_names.lock().await.insert(mailbox, fields.clone());
        Ok(fields)
    }

    /// The routing rule's custom fields for `mailbox`, by id (given as a number or by name).
    async fn routing_fields(&self, mailbox: Mailbox, routing: &Routing) -> Result<Vec<Value>, HelpdeskError> {
        let mut fields = Vec::new();
        for (key, value) in &routing.custom_fields {
            let id = match key.trim().parse::<u64>() {
                Ok(id) => id,
                Err(_) => {
                    let known = self.field_names.lock().await.get(&mailbox.id).cloned();
                    let known = match known {
                        Some(known) => known,
                        None => self.mailbox_fields(mailbox.id).await?,
                    };
                    known
                        .iter()
                        .find(|(_, name)| name.eq_ignore_ascii_case(key.trim()))
                        .map(|(id, _)| *id)
                        .ok_or_else(|| {
                            HelpdeskError::Misconfigured(format!(
                                "routing sets custom field `{key}`, which mailbox {} does not have",
                                mailbox.id
                            ))
                        })?
                }
            };
            if id != mailbox.conversation_field && id != mailbox.origin_field {
                fields.push(json!({ "id": id, "value": value }));
            }
        }
        Ok(fields)
    }

    /// The thread to add for `event`, with its text, customer and attachments.
    fn thread(&self, event: &ConversationEvent) -> (ThreadKind, Value) {
        let email = requestor(event);
        let kind = match (event.direction(), event.channel(), &email) {
            (Direction::Outbound, _, _) | (_, _, None) => ThreadKind::Note,
            (_, Channel::Voice, Some(_)) => ThreadKind::Phone,
            _ => ThreadKind::Customer,
        };
        let (text, attachments) = thread_text(event, self.config.max_attachment_bytes);
        let mut thread = json!({ "text": text });
        if kind != ThreadKind::Note
            && let Some(email) = email
        {
            thread["customer"] = json!({ "email": email });
        }
        if !attachments.is_empty() {
            thread["attachments"] = Value::Array(attachments);
        }
        (kind, thread)
    }
}

/// `X-RateLimit-Retry-After` (Mailbox API 2.0), else `Retry-After`.
fn retry_after(headers: &HeaderMap) -> Option<reqwest::header::HeaderValue> {
    headers
        .get("x-ratelimit-retry-after")
        .or_else(|| headers.get(reqwest::header::RETRY_AFTER))
        .cloned()
}

/// The items of a HAL collection.
fn embedded<'a>(listed: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    listed["_embedded"][name].as_array().into_iter().flatten()
}

/// The value of custom field `id` on a conversation.
fn custom_field(conversation: &Value, id: u64) -> Option<&str> {
    conversation["customFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|field| field["id"].as_u64() == Some(id))
        .and_then(|field| field["value"].as_str().or_else(|| field["text"].as_str()))
}

/// Whether a thread body holds `marker` as a whole: not followed by more of a longer id.
fn records(body: &str, marker: &str) -> bool {
    body.match_indices(marker).any(|(at, _)| {
        !body[at + marker.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    })
}

/// How an event enters a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadKind {
    /// From the customer (`POST .../customer`).
    Customer,
    /// A call with the customer (`POST .../phones`).
    Phone,
    /// Internal (`POST .../notes`).
    Note,
}

impl ThreadKind {
    /// The thread `type` in a new conversation.
    fn name(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Phone => "phone",
            Self::Note => "note",
        }
    }

    /// The endpoint adding such a thread to a conversation.
    fn endpoint(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Phone => "phones",
            Self::Note => "notes",
        }
    }
}

/// The channel's tag: `channel-<name>`, for example `channel-web-chat`.
pub(crate) fn channel_tag(event: &ConversationEvent) -> Option<String> {
    let channel = event.channel();
    (channel != Channel::Unspecified).then(|| {
        let name = channel.as_str_name().trim_start_matches("CHANNEL_");
        format!("channel-{}", name.to_ascii_lowercase().replace('_', "-"))
    })
}

/// The conversation `type`: phone for calls, chat for chat and messaging channels, else email.
fn conversation_type(event: &ConversationEvent) -> &'static str {
    match event.channel() {
        Channel::Voice => "phone",
        Channel::Email | Channel::Api | Channel::Unspecified => "email",
        _ => "chat",
    }
}

fn priority_tag(priority: Priority) -> Option<&'static str> {
    match priority {
        Priority::Low => Some("priority-low"),
        Priority::Normal => None,
        Priority::High => Some("priority-high"),
        Priority::Urgent => Some("priority-urgent"),
    }
}

/// The files Help Scout takes with a thread: each within `max_attachment_bytes`.
fn limits(max_attachment_bytes: u64) -> super::AttachmentLimits {
    super::AttachmentLimits::per_file(max_attachment_bytes)
}

/// The thread text (HTML, ending with the event marker) and the attachments to upload with it.
fn thread_text(event: &ConversationEvent, max_attachment_bytes: u64) -> (String, Vec<Value>) {
    let text = super::written_text(event);
    let mut html = text_to_html(if text.trim().is_empty() { "(no text)" } else { text });
    let mut uploads = Vec::new();
    let mut listed = Vec::new();
    let sent = super::sent_as_files(&event.attachments, limits(max_attachment_bytes));
    for (attachment, sent) in event.attachments.iter().zip(sent) {
        let name = super::attachment_name(attachment);
        let media_type = if attachment.media_type.is_empty() {
            "application/octet-stream"
        } else {
            &attachment.media_type
        };
        match &attachment.content {
            Some(Content::Data(data)) if sent => uploads.push(json!({
                "fileName": name,
                "mimeType": media_type,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
            })),
            content => {
                let mut line = format!("- {name} ({media_type}, {} bytes)", attachment.size_bytes);
                match content {
                    Some(Content::Reference(reference)) => line.push_str(&format!(": {reference}")),
                    Some(Content::Data(_)) => line.push_str(": too large to attach"),
                    None => {}
                }
                listed.push(line);
            }
        }
    }
    if !listed.is_empty() {
        html.push_str("<br><br>Attachments:<br>");
        html.push_str(&text_to_html(&listed.join("\n")));
    }
    html.push_str(&format!("<br><br>{EVENT_MARKER}{}", escape(&event.event_id)));
    (html, uploads)
}

/// The customer's first and last name from the display name (at most 40 characters each).
fn names(display_name: &str) -> (Option<String>, Option<String>) {
    let words: Vec<&str> = display_name.split_whitespace().collect();
    let cut = |s: String| -> Option<String> { (!s.is_empty()).then(|| s.chars().take(40).collect()) };
    match words.split_last() {
        None => (None, None),
        Some((only, [])) => (cut((*only).to_owned()), None),
        Some((last, first)) => (cut(first.join(" ")), cut((*last).to_owned())),
    }
}

/// The conversation's customer: email (see [`requestor`]), names, and the phone when the address
/// stands for it.
fn customer(event: &ConversationEvent, email: &str) -> Value {
    let mut customer = json!({ "email": email });
    let Some(participant) = event.participants.iter().find(|p| p.role == Role::Customer as i32) else {
        return customer;
    };
    let (first, last) = names(&participant.display_name);
    if let Some(first) = first {
        customer["firstName"] = json!(first);
    }
    if let Some(last) = last {
        customer["lastName"] = json!(last);
    }
    if email.ends_with("@phone.invalid")
        && let Some(phone) = participant.identifiers.iter().find(|i| i.kind == Kind::Phone as i32)
    {
        customer["phone"] = json!(phone.value);
    }
    customer
}

#[async_trait]
impl Helpdesk for HelpScout {
    fn attachment_limits(&self) -> Option<super::AttachmentLimits> {
        Some(limits(self.config.max_attachment_bytes))
    }

    async fn check(&self) -> Result<(), HelpdeskError> {
        for mailbox in self.mailboxes() {
            let fields = self.mailbox_fields(mailbox.id).await?;
            let missing: Vec<String> = [mailbox.conversation_field, mailbox.origin_field]
                .into_iter()
                .filter(|id| !fields.iter().any(|(field, _)| field == id))
                .map(|id| id.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(HelpdeskError::Misconfigured(format!(
                    "mailbox {} has no custom field with id {}: create the single-line fields for the omni conversation and origin event ids and configure their ids",
                    mailbox.id,
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }

    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        for mailbox in self.mailboxes() {
            let query = [
                ("mailbox", mailbox.id.to_string()),
                ("status", "all".to_owned()),
                ("customFieldsByIds", format!("{}:{conversation_id}", mailbox.conversation_field)),
            ];
            let found = self.get("/v2/conversations", &query).await?;
            // The search matches words; keep exact matches only. Several would mean someone copied
            // our field by hand: take the oldest.
            let oldest = embedded(&found, "conversations")
                .filter(|c| custom_field(c, mailbox.conversation_field) == Some(conversation_id))
                .filter_map(|c| Some((c["id"].as_u64()?, c)))
                .min_by_key(|(id, _)| *id);
            if let Some((id, conversation)) = oldest {
                return Ok(Some(FoundTicket {
                    ticket: self.ticket_ref(&id.to_string()),
                    origin_event_id: custom_field(conversation, mailbox.origin_field).unwrap_or_default().to_owned(),
                }));
            }
        }
        Ok(None)
    }

    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError> {
        let marker = format!("{EVENT_MARKER}{}", escape(event_id));
        let path = format!("/v2/conversations/{}/threads", ticket.id);
        let mut page = 1u64;
        loop {
            let listed = self.get(&path, &[("page", page.to_string())]).await?;
            if embedded(&listed, "threads").any(|thread| thread["body"].as_str().is_some_and(|body| records(body, &marker))) {
                return Ok(true);
            }
            // Help Scout keeps at most 100 threads per conversation (2 pages of 50).
            if page >= listed["page"]["totalPages"].as_u64().unwrap_or(1) || page >= 20 {
                return Ok(false);
            }
            page += 1;
        }
    }

    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        let email = requestor(event).ok_or_else(|| HelpdeskError::Rejected {
            status: 0,
            detail: "the event names no customer with an email, phone or platform id".into(),
        })?;
        let mailbox = self.mailbox_for(routing.group.as_deref())?;
        let mut tags: Vec<String> = Vec::new();
        let extra = routing.priority.and_then(priority_tag).map(str::to_owned);
        for tag in channel_tag(event)
            .into_iter()
            .chain(event.tags.iter().cloned())
            .chain(routing.tags.iter().cloned())
            .chain(extra)
        {
            let tag = tag.trim().to_lowercase();
            if !tag.is_empty() && !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let mut fields = vec![
            json!({ "id": mailbox.conversation_field, "value": event.conversation_id }),
            json!({ "id": mailbox.origin_field, "value": event.event_id }),
        ];
        fields.extend(self.routing_fields(mailbox, routing).await?);
        let (kind, mut thread) = self.thread(event);
        thread["type"] = json!(kind.name());
        let body = json!({
            "subject": subject(event),
            "customer": customer(event, &email),
            "mailboxId": mailbox.id,
            "type": conversation_type(event),
            "status": "active",
            "threads": [thread],
            "tags": tags,
            "fields": fields,
        });
        let created = self.call(Method::POST, "/v2/conversations", &[], Some(&body)).await?;
        // Without the id, the router retries; find_ticket then finds this conversation.
        let id = resource_id(&created)
            .ok_or_else(|| HelpdeskError::Unavailable("Help Scout created the conversation without a Resource-ID header".into()))?;
        Ok(self.ticket_ref(&id))
    }

    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        let (kind, thread) = self.thread(event);
        let path = format!("/v2/conversations/{}/{}", ticket.id, kind.endpoint());
        self.call(Method::POST, &path, &[], Some(&thread)).await?;
        Ok(())
    }
}
