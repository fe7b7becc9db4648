//! The customer's photo, GIF or video from an X DM: the attachment's reference is the medium's
//! `media_url_https` (on `ton.twitter.com`), or for a video or GIF its best video file variant
//! (on `video.twimg.com`). X serves DM media only to a `GET` signed with OAuth 1.0a as the
//! account that received the DM (HMAC-SHA1, the app's key and secret and the account's access
//! token and secret), so each download gets a fresh `Authorization` of its own (nonce,
//! timestamp); a variant's query (`?tag=..`) is signed as OAuth requires, among the parameters.
//! X announces no size or hash; the type is the medium's.
//!
//! Pure: the request is built here; the router does the HTTP.
//!
//! Documents followed:
//! <https://developer.x.com/en/docs/twitter-api/v1/direct-messages/message-attachments/guides/retrieving-media>
//! ("must be retrieved via an authenticated app-user GET request", signed with OAuth 1.0A),
//! <https://developer.x.com/en/docs/authentication/oauth-1-0a/authorizing-a-request>.

use super::send::Credentials;
use crate::media::{Auth, Download, url_under};

/// The hosts X serves DM media from (https only).
pub const MEDIA_HOSTS: [&str; 2] = ["ton.twitter.com", "video.twimg.com"];

/// The download of a medium whose reference is its URL, signed for the account.
pub fn download(reference: &str, credentials: &Credentials<'_>) -> Result<Download, String> {
    url_under(reference, "/").map_err(|why| format!("not an X media URL: {why}"))?;
    // Signed as the router's HTTP client sends it (host in lower case, no default port, the path
    // normalised): OAuth signs the URL without its query, and the query's parameters among its
    // own (decoded as a form, as OAuth 1.0a section 3.4.1.3.1 says).
    let mut url = url::Url::parse(reference).map_err(|why| format!("not an X media URL: {why}"))?;
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    url.set_query(None);
    url.set_fragment(None);
    let base = url.as_str();
    let token = oauth::Token::from_parts(
        credentials.consumer_key,
        credentials.consumer_secret,
        credentials.access_token,
        credentials.access_token_secret,
    );
    let authorization = oauth::get(base, &oauth::ParameterList::new(query), &token, oauth::HMAC_SHA1);
    Ok(Download {
        url: reference.to_owned(),
        auth: Auth::Authorization(authorization),
    })
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::attachment::Content;

    use super::*;
    use crate::x::send::tests::CREDENTIALS;

    #[test]
    fn a_dm_photo_downloads_with_a_fresh_signature_and_no_secret() {
        let event = crate::x::tests::event(include_str!("fixtures/dm-media.json"));
        let Some(Content::Reference(reference)) = &event.attachments[0].content else {
            panic!("a reference: {:?}", event.attachments)
        };
        let first = download(reference, &CREDENTIALS).unwrap();
        assert!(first.url.starts_with("https://ton.twitter.com/1.1/ton/data/dm/"), "{}", first.url);
        let Auth::Authorization(header) = &first.auth else {
            panic!("{:?}", first.auth)
        };
        for part in [
            "OAuth ",
            "oauth_consumer_key=\"ck\"",
            "oauth_token=\"at\"",
            "oauth_signature_method=\"HMAC-SHA1\"",
        ] {
            assert!(header.contains(part), "{part} missing in {header}");
        }
        for secret in [CREDENTIALS.consumer_secret, CREDENTIALS.access_token_secret] {
            assert!(!header.contains(secret), "{secret} sent in {header}");
        }
        assert_ne!(download(reference, &CREDENTIALS).unwrap().auth, first.auth, "a nonce per request");
        for not_a_url in ["1034828552951160836", "ftp://ton.twitter.com/x", "https://user@ton.twitter.com/x"] {
            assert!(download(not_a_url, &CREDENTIALS).is_err(), "{not_a_url}");
        }
    }
}
