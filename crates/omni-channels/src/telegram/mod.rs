//! Telegram Bot API webhooks. Placeholder until the adapter lands.

use omni_proto::v1::{Channel, ConversationEvent, RawRecord};

use crate::webhook::{Accepted, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest};
use crate::{KnownEvents, Normalize, NormalizeError};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "telegram";

/// The Telegram Bot API adapter. (Placeholder: being written.)
pub struct Telegram;

impl Normalize for Telegram {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, _raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        Err(NormalizeError::UnknownProvider(PROVIDER.to_owned()))
    }
}

impl WebhookAdapter for Telegram {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn id_channel(&self) -> &'static str {
        "telegram"
    }

    fn verify(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        Err(Rejection::Forbidden("adapter not implemented yet".to_owned()))
    }

    fn accept(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        Err(Rejection::BadRequest("adapter not implemented yet".to_owned()))
    }
}
