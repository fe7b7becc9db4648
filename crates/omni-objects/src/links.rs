//! Signed, expiring links to stored files, for destinations that take a URL rather than the
//! bytes (the generic webhook destination). The router makes them, omni-gateway serves them at
//! `GET /files/<sha256>?name=..&type=..&expires=..&sig=..`.
//!
//! `sig` is the lowercase hex HMAC-SHA256, keyed with `[objects] link_secret`, of
//! `<sha256>\n<type>\n<name>\n<expires>` (`expires` in Unix seconds): whoever holds a link gets
//! that one file, under that name and media type, until then; changing any of them breaks the
//! signature. Links carry no credentials of the store.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `[objects]`' link settings, checked: where the gateway is reached, the key, the lifetime.
#[derive(Clone)]
pub struct Links {
    public_url: String,
    secret: String,
    ttl: Duration,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("public_url", &self.public_url)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a link was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Missing parameters or a signature that does not check.
    #[error("the link's signature does not check")]
    Forged,
    /// Past its `expires`.
    #[error("the link has expired")]
    Expired,
}

/// What a link names, as the gateway reads it back.
#[derive(Debug, PartialEq, Eq)]
pub struct Linked<'a> {
    /// The file's SHA-256 (its key in the store).
    pub sha256: &'a str,
    /// The name it is served under.
    pub name: &'a str,
    /// The media type it is served as.
    pub media_type: &'a str,
}

fn mac(secret: &str, sha256: &str, media_type: &str, name: &str, expires: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{sha256}\n{media_type}\n{name}\n{expires}").as_bytes());
    mac
}

impl Links {
    /// Links from `public_url` (the gateway as the link's receivers reach it), signed with
    /// `secret`, valid for `ttl`. `None` when either is empty (no links: the files travel as
    /// before).
    pub fn new(public_url: &str, secret: &str, ttl: Duration) -> Option<Self> {
        let public_url = public_url.trim().trim_end_matches('/');
        (!public_url.is_empty() && !secret.is_empty()).then(|| Self {
            public_url: public_url.to_owned(),
            secret: secret.to_owned(),
            ttl,
        })
    }

    /// A link to the stored file `sha256`, served as `name` and `media_type`, valid from `now`
    /// for the configured time.
    pub fn link(&self, sha256: &str, name: &str, media_type: &str, now: SystemTime) -> String {
        let expires = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs();
        self.link_until(sha256, name, media_type, expires)
    }

    /// Whether a link made from `from` still works at `now` (for a while: an hour at least).
    pub fn valid_from(&self, from: SystemTime, now: SystemTime) -> bool {
        from.checked_add(self.ttl)
            .is_some_and(|end| end.duration_since(now).is_ok_and(|left| left > Duration::from_secs(3600)))
    }

    /// A link valid until `expires` (Unix seconds).
    pub fn link_until(&self, sha256: &str, name: &str, media_type: &str, expires: u64) -> String {
        let sig = hex::encode(mac(&self.secret, sha256, media_type, name, expires).finalize().into_bytes());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("name", name)
            .append_pair("type", media_type)
            .append_pair("expires", &expires.to_string())
            .append_pair("sig", &sig)
            .finish();
        format!("{}/files/{sha256}?{query}", self.public_url)
    }
}

/// Checks a link's parameters (`sha256` from the path, the query's pairs) against `secret` at
/// `now`: the signature first (in constant time), then the expiry.
pub fn verify<'a>(secret: &str, sha256: &'a str, query: &'a [(String, String)], now: SystemTime) -> Result<Linked<'a>, LinkError> {
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let (Some(name), Some(media_type), Some(expires), Some(sig)) = (get("name"), get("type"), get("expires"), get("sig")) else {
        return Err(LinkError::Forged);
    };
    let expires: u64 = expires.parse().map_err(|_| LinkError::Forged)?;
    let sig = hex::decode(sig).map_err(|_| LinkError::Forged)?;
    mac(secret, sha256, media_type, name, expires)
        .verify_slice(&sig)
        .map_err(|_| LinkError::Forged)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    if now > expires {
        return Err(LinkError::Expired);
    }
    Ok(Linked { sha256, name, media_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn query_of(link: &str) -> (String, Vec<(String, String)>) {
        let url = url::Url::parse(link).unwrap();
        let sha = url.path().rsplit('/').next().unwrap().to_owned();
        (sha, url.query_pairs().into_owned().collect())
    }

    #[test]
    fn a_link_opens_its_file_until_it_expires_and_no_other() {
        let links = Links::new("https://omni.example.com/", "s3cret", Duration::from_secs(600)).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let link = links.link(SHA, "hasar fotoğrafı.jpg", "image/jpeg", now);
        assert!(
            link.starts_with(&format!("https://omni.example.com/files/{SHA}?name=hasar+foto%C4%9F")),
            "{link}"
        );
        let (sha, query) = query_of(&link);
        let linked = verify("s3cret", &sha, &query, now + Duration::from_secs(599)).unwrap();
        assert_eq!((linked.name, linked.media_type), ("hasar fotoğrafı.jpg", "image/jpeg"));
        assert_eq!(
            verify("s3cret", &sha, &query, now + Duration::from_secs(601)),
            Err(LinkError::Expired)
        );
        assert_eq!(verify("another", &sha, &query, now), Err(LinkError::Forged));
        // Another file, type or lifetime under the same signature.
        let other_sha = SHA.replace('9', "8");
        assert_eq!(verify("s3cret", &other_sha, &query, now), Err(LinkError::Forged));
        for (key, value) in [("type", "text/html"), ("expires", "9999999999"), ("name", "x.html")] {
            let mut changed = query.clone();
            changed.iter_mut().find(|(k, _)| k == key).unwrap().1 = value.to_owned();
            assert_eq!(verify("s3cret", &sha, &changed, now), Err(LinkError::Forged), "{key}");
        }
        let unsigned: Vec<_> = query.iter().filter(|(k, _)| k != "sig").cloned().collect();
        assert_eq!(verify("s3cret", &sha, &unsigned, now), Err(LinkError::Forged));
    }

    #[test]
    fn no_links_without_a_url_or_a_secret() {
        assert!(Links::new("", "s3cret", Duration::from_secs(1)).is_none());
        assert!(Links::new("https://omni.example.com", "", Duration::from_secs(1)).is_none());
    }
}
