//! Messenger (Meta Graph, `object: page`) webhooks: the shared Messenger Platform adapter
//! ([`crate::meta::messaging`]) with provider `messenger` and channel Messenger. What is stored
//! and what becomes an event is described there; the signature and handshake in [`crate::meta`].

use omni_proto::v1::Channel;

use crate::meta::messaging::Messaging;

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "messenger";

/// The adapter value the gateway and normalizer use.
pub static MESSENGER: Messaging = Messaging {
    provider: PROVIDER,
    channel: Channel::Messenger,
    object: "page",
    product: "Messenger",
};

#[cfg(test)]
mod tests;
