//! Helpdesk adapters: one trait, one folder per helpdesk.
//!
//! The router owns effectively-once delivery (see the crate docs); an adapter only has to
//! record the omni ids in the helpdesk so that the router can look them up after a crash:
//! the conversation id and the opening event id on each ticket, and the event id on each
//! follow-up it adds.

pub mod freshdesk;
pub mod helpscout;
mod html;
#[cfg(any(test, feature = "kit"))]
pub mod kit;
pub mod replies;
pub mod request_tracker;
pub mod requester;
pub mod webhook;
pub mod zammad;
pub mod zendesk;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use omni_proto::v1::attachment::Content;
use omni_proto::v1::{Attachment, ConversationEvent};
use serde::Deserialize;

/// A ticket priority, mapped onto each helpdesk's own scale.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Can wait.
    Low,
    /// The helpdesk's default.
    #[default]
    Normal,
    /// Before the normal ones.
    High,
    /// Now.
    Urgent,
}

/// What routing sets on a new ticket, besides the event itself (from the matching rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    /// The group, queue, team or mailbox the ticket goes to (the helpdesk's own name or id);
    /// `None`: the destination's configured default.
    pub group: Option<String>,
    /// `None`: the helpdesk's default.
    pub priority: Option<Priority>,
    /// Tags to set, lowercase (the event's own tags and the channel are added by the adapter
    /// where the helpdesk has tags).
    pub tags: Vec<String>,
    /// Custom fields by the helpdesk's field name or id.
    pub custom_fields: BTreeMap<String, String>,
}

/// A ticket in a helpdesk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRef {
    /// The helpdesk's ticket id.
    pub id: String,
    /// A link for people, when the helpdesk has one.
    pub url: String,
}

/// A ticket found by conversation id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundTicket {
    /// The ticket.
    pub ticket: TicketRef,
    /// The event that opened it, as recorded in the ticket.
    pub origin_event_id: String,
}

/// Why a helpdesk call failed, and so whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum HelpdeskError {
    /// Network error, timeout or 5xx: retry with backoff.
    #[error("helpdesk unavailable: {0}")]
    Unavailable(String),
    /// 429: retry after the given delay, or with backoff.
    #[error("helpdesk rate limit reached")]
    RateLimited {
        /// From `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 401/403 or missing set-up (custom fields): an operator must act. Retried, not dead-lettered,
    /// since every event would fail the same way.
    #[error("helpdesk not usable: {0}")]
    Misconfigured(String),
    /// The helpdesk refused this event for good (another 4xx): dead-letter it.
    #[error("helpdesk refused the event with status {status}: {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The response body, truncated.
        detail: String,
    },
}

impl HelpdeskError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }
}

/// A destination's config (`[router.destinations.<name>]`, its `kind` listed in
/// [`crate::config::DestinationConfig`]): validates itself and builds its adapter.
pub trait Destination: omni_runtime::Validate {
    /// The adapter this config describes.
    fn build(&self) -> Result<std::sync::Arc<dyn Helpdesk>, reqwest::Error>;
    /// Where omni polls this helpdesk for the agents' answers; `None` when it is not polled.
    fn reply_poller(&self) -> Result<Option<std::sync::Arc<dyn replies::ReplyPoller>>, reqwest::Error> {
        Ok(None)
    }
    /// What checks and reads this helpdesk's calls announcing the agents' answers; `None` when
    /// it does not call omni (or no secret to verify its calls is configured).
    fn reply_webhook(&self) -> Result<Option<std::sync::Arc<dyn replies::ReplyWebhook>>, reqwest::Error> {
        Ok(None)
    }
}

/// One helpdesk the router delivers to.
#[async_trait]
pub trait Helpdesk: Send + Sync {
    /// Checks the helpdesk answers, accepts our credentials and is set up for omni.
    async fn check(&self) -> Result<(), HelpdeskError>;

    /// Finds the ticket holding a conversation, if one exists.
    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError>;

    /// The ticket a subject line refers to by the helpdesk's own reference (for example RT's
    /// `[rtname #123]`), when there is one and the ticket exists. A reply whose client broke
    /// the thread headers still reaches its ticket this way.
    async fn ticket_in_subject(&self, _subject: &str) -> Result<Option<TicketRef>, HelpdeskError> {
        Ok(None)
    }

    /// What to keep in an email subject so the customer's answer finds ticket `ticket_id` even
    /// when the mail client drops the thread headers (RT: `[omni-local #12]`); empty when the
    /// helpdesk has no such reference.
    fn ticket_reference(&self, _ticket_id: &str) -> String {
        String::new()
    }

    /// Whether this destination gets a signed, expiring link to each file (`[objects]
    /// public_url` and `link_secret` set) rather than its bytes: receivers that fetch what they
    /// need (the generic webhook) rather than upload it to a helpdesk.
    fn takes_file_links(&self) -> bool {
        false
    }

    /// The files the helpdesk takes with one message, when it has limits: the files beyond them
    /// (see `sent_as_files`) are listed in the text, and the router gives them a signed link to
    /// list when `[objects]` links are configured. The adapter splits by the same value.
    fn attachment_limits(&self) -> Option<AttachmentLimits> {
        None
    }

    /// Whether a follow-up for `event_id` was already added to the ticket.
    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError>;

    /// Opens a ticket for the first event of a conversation, the customer as requester, with
    /// what the routing rule set.
    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError>;

    /// Adds a later event of the conversation to its ticket.
    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError>;
}

/// A helpdesk behind a token bucket: every call waits for a token first, so the destination
/// never gets more than its plan allows, whatever the backlog.
pub struct RateLimited {
    inner: std::sync::Arc<dyn Helpdesk>,
    limiter: governor::DefaultDirectRateLimiter,
}

impl RateLimited {
    /// `per_minute` requests a minute, with bursts of up to a tenth of that.
    pub fn new(inner: std::sync::Arc<dyn Helpdesk>, per_minute: std::num::NonZeroU32) -> Self {
        let burst = std::num::NonZeroU32::new((per_minute.get() / 10).max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            inner,
            limiter: governor::RateLimiter::direct(quota),
        }
    }

    async fn token(&self) {
        self.limiter.until_ready().await;
    }
}

#[async_trait]
impl Helpdesk for RateLimited {
    async fn check(&self) -> Result<(), HelpdeskError> {
        self.token().await;
        self.inner.check().await
    }

    async fn find_ticket(&self, conversation_id: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
        self.token().await;
        self.inner.find_ticket(conversation_id).await
    }

    async fn ticket_in_subject(&self, subject: &str) -> Result<Option<TicketRef>, HelpdeskError> {
        self.token().await;
        self.inner.ticket_in_subject(subject).await
    }

    fn ticket_reference(&self, ticket_id: &str) -> String {
        self.inner.ticket_reference(ticket_id)
    }

    fn takes_file_links(&self) -> bool {
        self.inner.takes_file_links()
    }

    fn attachment_limits(&self) -> Option<AttachmentLimits> {
        self.inner.attachment_limits()
    }

    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError> {
        self.token().await;
        self.inner.has_event(ticket, event_id).await
    }

    async fn create_ticket(&self, event: &ConversationEvent, routing: &Routing) -> Result<TicketRef, HelpdeskError> {
        self.token().await;
        self.inner.create_ticket(event, routing).await
    }

    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError> {
        self.token().await;
        self.inner.append(ticket, event).await
    }
}

/// A ticket's tags: `channel-<name>`, the event's tags, the rule's tags, each passed through the
/// helpdesk's own `clean` (case, separators it cannot take), blanks dropped, each once.
pub(crate) fn ticket_tags(event: &ConversationEvent, routing: &Routing, clean: impl Fn(&str) -> String) -> Vec<String> {
    let channel = format!("channel-{}", crate::rules::channel_name(event.channel()));
    let mut tags: Vec<String> = Vec::new();
    for tag in std::iter::once(&channel).chain(&event.tags).chain(&routing.tags) {
        let tag = clean(tag);
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// The bytes of files a helpdesk takes with one message (see [`Helpdesk::attachment_limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// All of one message's files together.
    pub per_message: u64,
    /// Any one file.
    pub per_file: u64,
}

impl AttachmentLimits {
    /// At most `bytes` in all (and so per file).
    pub const fn per_message(bytes: u64) -> Self {
        Self {
            per_message: bytes,
            per_file: bytes,
        }
    }

    /// At most `bytes` per file, any number of them.
    pub const fn per_file(bytes: u64) -> Self {
        Self {
            per_message: u64::MAX,
            per_file: bytes,
        }
    }
}

/// The event's attachments split into those sent as files (see [`sent_as_files`]) and those
/// only listed in the text.
pub(crate) fn split_attachments(event: &ConversationEvent, limits: AttachmentLimits) -> (Vec<&Attachment>, Vec<&Attachment>) {
    let sent = sent_as_files(&event.attachments, limits);
    let (files, listed): (Vec<_>, Vec<_>) = event.attachments.iter().zip(sent).partition(|(_, sent)| *sent);
    (
        files.into_iter().map(|(a, _)| a).collect(),
        listed.into_iter().map(|(a, _)| a).collect(),
    )
}

/// Per attachment, whether it is sent as a file within `limits`: those with their content, in
/// order, each within the per-file limit while the total stays within the per-message one.
pub(crate) fn sent_as_files(attachments: &[Attachment], limits: AttachmentLimits) -> Vec<bool> {
    let mut total = 0u64;
    attachments
        .iter()
        .map(|attachment| match &attachment.content {
            Some(Content::Data(data)) => {
                let size = data.len() as u64;
                let fits = size <= limits.per_file && total.saturating_add(size) <= limits.per_message;
                if fits {
                    total += size;
                }
                fits
            }
            _ => false,
        })
        .collect()
}

/// A file name for an attachment sent as a file: its own, else `attachment`.
pub(crate) fn attachment_name(attachment: &Attachment) -> &str {
    if attachment.name.is_empty() {
        "attachment"
    } else {
        &attachment.name
    }
}

/// What the sender wrote this time: the new part of a mail (`new_text`, without the quoted
/// thread) where there is one, else the whole text; empty when there is no body.
pub(crate) fn written_text(event: &ConversationEvent) -> &str {
    let body = event.body.as_ref();
    body.map(|b| if b.new_text.is_empty() { &b.text } else { &b.new_text })
        .map(String::as_str)
        .unwrap_or_default()
}

/// What the sender wrote this time (`(no text)` when blank), then the `listed` attachments (see
/// [`listed_attachments`]).
pub(crate) fn text_with_listed_attachments(event: &ConversationEvent, listed: &[&Attachment], unnamed: &str) -> String {
    let text = written_text(event);
    let mut content = if text.trim().is_empty() {
        "(no text)".to_owned()
    } else {
        text.to_owned()
    };
    if !listed.is_empty() {
        content.push_str("\n\n");
        content.push_str(&listed_attachments(listed, unnamed));
    }
    content
}

/// The `listed` attachments under a signature separator, one line each with name (`unnamed`
/// when it has none), type, size and where to fetch them; empty when there are none.
pub(crate) fn listed_attachments(listed: &[&Attachment], unnamed: &str) -> String {
    let mut content = String::new();
    if !listed.is_empty() {
        content.push_str("-- \nAttachments:");
        for attachment in listed {
            let name = if attachment.name.is_empty() { unnamed } else { &attachment.name };
            content.push_str(&format!("\n- {name} ({}, {} bytes)", attachment.media_type, attachment.size_bytes));
            if let Some(Content::Reference(reference)) = &attachment.content {
                content.push_str(&format!(": {reference}"));
            }
        }
    }
    content
}

/// Classifies an HTTP error status.
pub(crate) fn error_for_status(
    status: reqwest::StatusCode,
    retry_after: Option<&reqwest::header::HeaderValue>,
    body: &str,
) -> HelpdeskError {
    let detail: String = body.chars().take(512).collect();
    match status.as_u16() {
        429 => HelpdeskError::RateLimited {
            retry_after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        401 | 403 => HelpdeskError::Misconfigured(format!("credentials refused (status {status})")),
        500..=599 | 408 => HelpdeskError::Unavailable(format!("status {status}")),
        status => HelpdeskError::Rejected { status, detail },
    }
}

/// A helpdesk's successful HTTP answer, read whole.
pub(crate) struct Answer {
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON; an empty body (`204`, or a `200` without content) is `null`.
    pub fn json(&self) -> Result<serde_json::Value, HelpdeskError> {
        if self.body.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        self.json_required()
    }

    /// The body as JSON, which the API always sends: anything else is a transient failure.
    pub fn json_required(&self) -> Result<serde_json::Value, HelpdeskError> {
        serde_json::from_str(&self.body).map_err(|error| HelpdeskError::Unavailable(format!("response is not json: {error}")))
    }
}

/// Sends a request to a helpdesk and reads the whole answer: a transport failure is
/// `Unavailable`; an error status goes first to `refine` (a helpdesk's own meaning of a status:
/// Zendesk's 409, a 400 naming omni's custom fields), then to [`error_for_status`] with
/// `Retry-After`.
pub(crate) async fn send(
    builder: reqwest::RequestBuilder,
    refine: impl FnOnce(reqwest::StatusCode, &reqwest::header::HeaderMap, &str) -> Option<HelpdeskError>,
) -> Result<Answer, HelpdeskError> {
    let response = builder.send().await.map_err(error_for_transport)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(error_for_transport)?;
    if !status.is_success() {
        return Err(
            refine(status, &headers, &body).unwrap_or_else(|| error_for_status(status, headers.get(reqwest::header::RETRY_AFTER), &body))
        );
    }
    Ok(Answer { headers, body })
}

/// No helpdesk-specific meaning of an error status.
pub(crate) fn no_refinement(_: reqwest::StatusCode, _: &reqwest::header::HeaderMap, _: &str) -> Option<HelpdeskError> {
    None
}

/// The HTTP client an adapter builds on: each request ends after `timeout_secs`, and says it is
/// omni's router (its version) to the helpdesk's logs.
pub(crate) fn http_client(timeout_secs: u64) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .user_agent(concat!("omni-router/", env!("CARGO_PKG_VERSION")))
}

/// Classifies a transport error.
pub(crate) fn error_for_transport(error: reqwest::Error) -> HelpdeskError {
    // Without the URL: a webhook URL may carry a token in its path or query.
    HelpdeskError::Unavailable(format!("{}", error.without_url()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    /// Counts calls and answers at once.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Helpdesk for Counting {
        async fn check(&self) -> Result<(), HelpdeskError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn find_ticket(&self, _: &str) -> Result<Option<FoundTicket>, HelpdeskError> {
            Ok(None)
        }
        async fn has_event(&self, _: &TicketRef, _: &str) -> Result<bool, HelpdeskError> {
            Ok(false)
        }
        async fn create_ticket(&self, _: &ConversationEvent, _: &Routing) -> Result<TicketRef, HelpdeskError> {
            unreachable!()
        }
        async fn append(&self, _: &TicketRef, _: &ConversationEvent) -> Result<(), HelpdeskError> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn the_token_bucket_holds_calls_to_the_configured_rate() {
        let inner = Arc::new(Counting::default());
        // 600 a minute: a burst of 60, then one every 100 ms.
        let limited = RateLimited::new(inner.clone(), std::num::NonZeroU32::new(600).unwrap());
        let started = Instant::now();
        for _ in 0..60 {
            limited.check().await.unwrap();
        }
        let burst = started.elapsed();
        for _ in 0..5 {
            limited.check().await.unwrap();
        }
        let after = started.elapsed();
        assert_eq!(inner.0.load(Ordering::SeqCst), 65);
        // Lower bounds only: five calls past the burst need at least ~0.5 s whatever the machine.
        assert!(after - burst >= Duration::from_millis(400), "burst {burst:?}, after {after:?}");
    }

    #[test]
    fn files_beyond_a_helpdesks_limit_are_the_ones_not_sent() {
        let file = |content: Option<Content>| Attachment {
            content,
            ..Default::default()
        };
        let bytes = |n: usize| Some(Content::Data(vec![0; n]));
        let attachments = [
            file(bytes(6)),
            file(bytes(5)),
            file(Some(Content::Reference("https://files.example/1".into()))),
            file(bytes(4)),
            file(None),
        ];
        // In order while the total stays within 10: the 6, not the 5 (11), the 4 (10).
        let per_message = AttachmentLimits::per_message;
        assert_eq!(sent_as_files(&attachments, per_message(10)), [true, false, false, true, false]);
        assert_eq!(sent_as_files(&attachments, per_message(0)), [false; 5]);
        // Each within 5, however many: not the 6.
        let per_file = AttachmentLimits::per_file(5);
        assert_eq!(sent_as_files(&attachments, per_file), [false, true, false, true, false]);
        let event = ConversationEvent {
            attachments: attachments.to_vec(),
            ..Default::default()
        };
        let (files, listed) = split_attachments(&event, per_message(10));
        assert_eq!((files.len(), listed.len()), (2, 3));
    }
}
