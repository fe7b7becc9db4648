//! HMAC signatures as providers compute them, compared in constant time (the `hmac` crate's
//! `verify_slice`), and constant-time token comparison.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Rejection;

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA1 of the concatenated `parts` under `key` (Twilio).
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Base64 (standard alphabet, padded).
pub fn base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Checks a presented HMAC-SHA256 given in lowercase or uppercase hex against `parts`, in
/// constant time. `what` names the header in the error.
pub fn verify_sha256_hex(key: &[u8], parts: &[&[u8]], presented_hex: &str, what: &str) -> Result<(), Rejection> {
    let presented = hex::decode(presented_hex.trim()).map_err(|_| Rejection::Forbidden(format!("{what} is not hex")))?;
    verify_mac::<Hmac<Sha256>>(key, parts, &presented, what)
}

/// Checks a presented HMAC-SHA256 given in base64 against `parts`, in constant time.
pub fn verify_sha256_base64(key: &[u8], parts: &[&[u8]], presented_base64: &str, what: &str) -> Result<(), Rejection> {
    let presented = BASE64
        .decode(presented_base64.trim())
        .map_err(|_| Rejection::Forbidden(format!("{what} is not base64")))?;
    verify_mac::<Hmac<Sha256>>(key, parts, &presented, what)
}

/// Checks a presented HMAC-SHA1 given in hex against `parts`, in constant time (Zammad's
/// `X-Hub-Signature: sha1=<hex>`, without the prefix).
pub fn verify_sha1_hex(key: &[u8], parts: &[&[u8]], presented_hex: &str, what: &str) -> Result<(), Rejection> {
    let presented = hex::decode(presented_hex.trim()).map_err(|_| Rejection::Forbidden(format!("{what} is not hex")))?;
    verify_mac::<Hmac<Sha1>>(key, parts, &presented, what)
}

/// Checks a presented HMAC-SHA1 given in base64 against `parts`, in constant time.
pub fn verify_sha1_base64(key: &[u8], parts: &[&[u8]], presented_base64: &str, what: &str) -> Result<(), Rejection> {
    let presented = BASE64
        .decode(presented_base64.trim())
        .map_err(|_| Rejection::Forbidden(format!("{what} is not base64")))?;
    verify_mac::<Hmac<Sha1>>(key, parts, &presented, what)
}

fn verify_mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]], presented: &[u8], what: &str) -> Result<(), Rejection> {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(presented)
        .map_err(|_| Rejection::Forbidden(format!("{what} does not match")))
}

/// Compares a presented token with the configured one in constant time (over SHA-256 digests,
/// so the comparison does not leak the length either).
pub fn tokens_equal(presented: &str, expected: &str) -> bool {
    use sha2::Digest;
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    bool::from(presented.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let good = hex::encode(mac);
        assert!(verify_sha256_hex(b"Jefe", &[b"what do ya want for nothing?"], &good, "sig").is_ok());
        assert!(verify_sha256_hex(b"Jefe", &[b"what do ya want for nothing!"], &good, "sig").is_err());
        assert!(verify_sha256_hex(b"Jefe", &[b"x"], "zz", "sig").is_err());
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202_case_2() {
        let mac = hmac_sha1(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(hex::encode(mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        assert!(verify_sha1_base64(b"Jefe", &[b"what do ya want for nothing?"], &base64(&mac), "sig").is_ok());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_equal("s3cret-token", "s3cret-token"));
        assert!(!tokens_equal("s3cret-token", "s3cret-tokeN"));
        assert!(!tokens_equal("", "s3cret-token"));
    }
}
