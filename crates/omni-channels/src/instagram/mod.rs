//! Instagram messaging (Meta Graph, `object: instagram`) webhooks: the shared Messenger Platform
//! adapter ([`crate::meta::messaging`]) with provider `instagram` and channel Instagram. What is
//! stored and what becomes an event is described there; the signature and handshake in
//! [`crate::meta`].

use omni_proto::v1::Channel;

use crate::meta::messaging::Messaging;

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "instagram";

/// The adapter value the gateway and normalizer use.
pub static INSTAGRAM: Messaging = Messaging {
    provider: PROVIDER,
    channel: Channel::Instagram,
    object: "instagram",
    product: "Instagram",
};

#[cfg(test)]
mod tests;
