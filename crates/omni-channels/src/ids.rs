//! Deterministic ids: any replica computes the same id for the same input, without a look-up.
//!
//! Both are the first 16 bytes of a SHA-256, in lowercase hex (32 characters), over
//! NUL-separated fields behind a domain prefix, so an event id can never equal a conversation id
//! and fields cannot run into each other.

use sha2::{Digest, Sha256};

fn digest(domain: &str, fields: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    for field in fields {
        hasher.update([0]);
        hasher.update(field);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The event id of a provider message: over channel, account and the provider's message id,
/// or over the exact payload bytes when the provider gives no id.
pub fn event_id(channel: &str, account: &str, provider_message_id: Option<&str>, payload: &[u8]) -> String {
    match provider_message_id {
        Some(id) => digest("omni.event.v1", &[channel.as_bytes(), account.as_bytes(), b"id", id.as_bytes()]),
        None => digest("omni.event.v1", &[channel.as_bytes(), account.as_bytes(), b"bytes", payload]),
    }
}

/// A conversation id over the given fields (channel, account, customer, thread, ...).
pub fn conversation_id(fields: &[&str]) -> String {
    let fields: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    digest("omni.conversation.v1", &fields)
}

/// The id of a delivery receipt: over provider, account, the provider's message id and status.
pub fn receipt_id(provider: &str, account: &str, message_id: &str, status: &str) -> String {
    digest(
        "omni.receipt.v1",
        &[provider.as_bytes(), account.as_bytes(), message_id.as_bytes(), status.as_bytes()],
    )
}

/// A partition key over the given fields, so records of one customer stay in order.
pub fn partition_key(fields: &[&str]) -> String {
    let fields: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    digest("omni.key.v1", &fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_id_and_fields_do_not_run_together() {
        assert_eq!(
            event_id("api", "default", Some("form-77"), b"x"),
            event_id("api", "default", Some("form-77"), b"y")
        );
        assert_ne!(
            event_id("api", "default", Some("form-77"), b""),
            event_id("api", "default", Some("form-78"), b"")
        );
        assert_ne!(event_id("api", "de", Some("fault"), b""), event_id("api", "def", Some("ault"), b""));
        assert_ne!(event_id("api", "default", None, b"a"), event_id("api", "default", None, b"b"));
        assert_ne!(conversation_id(&["a", "bc"]), conversation_id(&["ab", "c"]));
        assert_eq!(conversation_id(&["api", "x"]).len(), 32);
    }
}
