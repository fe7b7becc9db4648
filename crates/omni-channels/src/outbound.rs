//! What every channel's way back shares: the one HTTP request that sends an answer through a
//! provider's API, and how a provider says no. Each channel folder's `send.rs` builds the request
//! and reads the answer (pure, tested without a server); the sender service does the HTTP.

use std::time::Duration;

use omni_proto::v1::OutboundMessage;
use serde_json::Value;

/// One HTTP POST to a provider's send API.
#[derive(Clone, Default, PartialEq)]
pub struct Request {
    /// The endpoint, under the account's `api_base_url`.
    pub url: String,
    /// A bearer token for `Authorization`, when the API takes one (never logged).
    pub bearer: Option<String>,
    /// Basic authentication (user, password), when the API takes that instead (never logged).
    pub basic: Option<(String, String)>,
    /// The body: JSON, or with `form`, a flat object of strings sent as
    /// `application/x-www-form-urlencoded` in its key order.
    pub body: Value,
    /// Send `body` form-encoded (Twilio) rather than as JSON.
    pub form: bool,
    /// Other headers the API wants (Viber's `X-Viber-Auth-Token`, an OAuth 1.0a
    /// `Authorization`): credentials, so their values are never logged.
    pub headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("url", &"<may carry a token>")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("body", &self.body)
            .field("form", &self.form)
            .field(
                "headers",
                &self.headers.iter().map(|(name, _)| (name, "<redacted>")).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a provider answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, in seconds, when sent.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a provider did not take a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// For good (no such chat, the user blocked the bot, outside the messaging window): a dead
    /// letter and a note for the agent.
    Refused(String),
    /// Not now (rate limited, 5xx): tried again after the provider's delay, when it gave one.
    Later(Option<Duration>, String),
}

/// The answer's text, trimmed; refused when there is none or it is longer than `max_chars`.
pub fn answer_text<'a>(outbound: &'a OutboundMessage, provider: &str, max_chars: usize) -> Result<&'a str, Refusal> {
    let text = outbound.body.as_ref().map(|b| b.text.trim()).unwrap_or_default();
    if text.is_empty() {
        return Err(Refusal::Refused("the answer has no text".into()));
    }
    if text.chars().count() > max_chars {
        return Err(Refusal::Refused(format!(
            "the answer is longer than {provider}'s {max_chars} characters"
        )));
    }
    Ok(text)
}

/// The provider's id of a message it accepted (2xx), or a marker when it gave none: the message
/// went out, and sending it again would send it twice.
pub fn accepted_id(id: Option<&str>) -> String {
    id.filter(|id| !id.is_empty()).unwrap_or("(accepted without an id)").to_owned()
}

/// What the channels' `send.rs` tests share: an answer with a text, a provider's response.
#[cfg(test)]
pub(crate) mod fixtures {
    use omni_proto::v1::{Body, OutboundMessage};

    use super::Response;

    /// An answer whose text is `text`.
    pub fn answer(text: &str) -> OutboundMessage {
        OutboundMessage {
            body: Some(Body {
                text: text.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A provider's response without `Retry-After`.
    pub fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }
}
