//! Helpdesk adapters: one trait, one folder per helpdesk.
//!
//! The router owns effectively-once delivery (see the crate docs); an adapter only has to
//! record the omni ids in the helpdesk so that the router can look them up after a crash:
//! the conversation id and the opening event id on each ticket, and the event id on each
//! follow-up it adds.

pub mod request_tracker;

use std::time::Duration;

use async_trait::async_trait;
use omni_proto::v1::ConversationEvent;

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

    /// Whether a follow-up for `event_id` was already added to the ticket.
    async fn has_event(&self, ticket: &TicketRef, event_id: &str) -> Result<bool, HelpdeskError>;

    /// Opens a ticket for the first event of a conversation, the customer as requester.
    async fn create_ticket(&self, event: &ConversationEvent) -> Result<TicketRef, HelpdeskError>;

    /// Adds a later event of the conversation to its ticket.
    async fn append(&self, ticket: &TicketRef, event: &ConversationEvent) -> Result<(), HelpdeskError>;
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

/// Classifies a transport error.
pub(crate) fn error_for_transport(error: reqwest::Error) -> HelpdeskError {
    HelpdeskError::Unavailable(format!("{error}"))
}
