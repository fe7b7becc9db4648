//! Aircall webhooks. Placeholder until the adapter lands.

use omni_proto::v1::{Channel, ConversationEvent, RawRecord};

use crate::webhook::{Accepted, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest};
use crate::{KnownEvents, Normalize, NormalizeError};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "aircall";

/// The Aircall adapter. (Placeholder: being written.)
pub struct Aircall;

impl Normalize for Aircall {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, _raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        Err(NormalizeError::UnknownProvider(PROVIDER.to_owned()))
    }
}

impl WebhookAdapter for Aircall {
    fn channel(&self) -> Channel {
        Channel::Voice
    }

    fn id_channel(&self) -> &'static str {
        "voice"
    }

    fn verify(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        Err(Rejection::Forbidden("adapter not implemented yet".to_owned()))
    }

    fn accept(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        Err(Rejection::BadRequest("adapter not implemented yet".to_owned()))
    }
}
