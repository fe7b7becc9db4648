//! The signatures of the chat: the visitor token the gateway gives a browser (so a reload, a new
//! tab or a reconnect continues the same conversation) and the identity hash a shop computes for
//! its logged-in customer (as Chatwoot's `identifier_hash`). Both HMAC-SHA256 with the account's
//! secret, checked in constant time by the `hmac` crate.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix and version of visitor tokens.
const TOKEN_VERSION: &str = "v1";

fn mac(secret: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length")
}

/// A new visitor id: 128 random bits from the operating system, hex.
pub fn new_visitor() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

/// The token of `visitor` on `account`: `v1.<visitor>.<hex HMAC>`.
pub fn visitor_token(secret: &str, account: &str, visitor: &str) -> String {
    let mut mac = mac(secret);
    mac.update(format!("visitor\n{account}\n{visitor}").as_bytes());
    format!("{TOKEN_VERSION}.{visitor}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The visitor a token names, when the token is this account's and unaltered.
pub fn visitor_of(secret: &str, account: &str, token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(TOKEN_VERSION), Some(visitor), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if visitor.len() != 32 || !visitor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let signature = hex::decode(signature).ok()?;
    let mut mac = mac(secret);
    mac.update(format!("visitor\n{account}\n{visitor}").as_bytes());
    mac.verify_slice(&signature).ok().map(|()| visitor.to_owned())
}

/// Whether `hash` (hex) is the account's HMAC over `id + "\n" + email`: the shop vouches for the
/// customer.
pub fn identity_checks(secret: &str, id: &str, email: &str, hash: &str) -> bool {
    let Ok(signature) = hex::decode(hash) else { return false };
    let mut mac = mac(secret);
    mac.update(format!("{id}\n{email}").as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// The identity hash a shop computes (for the docs, the demo and the tests).
pub fn identity_hash(secret: &str, id: &str, email: &str) -> String {
    let mut mac = mac(secret);
    mac.update(format!("{id}\n{email}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_visitor_only_on_its_account_and_unaltered() {
        let visitor = new_visitor();
        assert_eq!(visitor.len(), 32);
        assert_ne!(visitor, new_visitor());
        let token = visitor_token("s3cret", "shop", &visitor);
        assert_eq!(visitor_of("s3cret", "shop", &token).as_deref(), Some(visitor.as_str()));
        assert_eq!(visitor_of("s3cret", "other-shop", &token), None);
        assert_eq!(visitor_of("another secret", "shop", &token), None);
        let other = new_visitor();
        let swapped = token.replace(&visitor, &other);
        assert_eq!(visitor_of("s3cret", "shop", &swapped), None);
        for bad in ["", "v1", "v1..", "v2.x.y", &format!("{token}.extra"), "v1.zz.00"] {
            assert_eq!(visitor_of("s3cret", "shop", bad), None, "{bad}");
        }
    }

    #[test]
    fn an_identity_checks_only_with_its_own_id_and_email() {
        let hash = identity_hash("s3cret", "cust-42", "ayse@example.com");
        assert!(identity_checks("s3cret", "cust-42", "ayse@example.com", &hash));
        assert!(!identity_checks("s3cret", "cust-43", "ayse@example.com", &hash));
        assert!(!identity_checks("s3cret", "cust-42", "eve@example.com", &hash));
        assert!(!identity_checks("other", "cust-42", "ayse@example.com", &hash));
        assert!(!identity_checks("s3cret", "cust-42", "ayse@example.com", "not hex"));
    }
}
