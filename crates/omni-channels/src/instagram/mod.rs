//! Instagram messaging (Meta Graph) webhooks. Placeholder until the adapter lands.

use omni_proto::v1::{Channel, ConversationEvent, RawRecord};

use crate::webhook::{Accepted, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest};
use crate::{KnownEvents, Normalize, NormalizeError};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "instagram";

/// The Instagram messaging (Meta Graph) adapter. (Placeholder: being written.)
pub struct Adapter;
/// The adapter value the gateway and normalizer use.
pub static INSTAGRAM: Adapter = Adapter;

impl Normalize for Adapter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, _raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        Err(NormalizeError::UnknownProvider(PROVIDER.to_owned()))
    }
}

impl WebhookAdapter for Adapter {
    fn channel(&self) -> Channel {
        Channel::Instagram
    }

    fn id_channel(&self) -> &'static str {
        "instagram"
    }

    fn verify(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        Err(Rejection::Forbidden("adapter not implemented yet".to_owned()))
    }

    fn accept(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        Err(Rejection::BadRequest("adapter not implemented yet".to_owned()))
    }
}
