//! The customer's picture, video or file from Viber: a `message` callback carries `media`, a
//! URL on Viber's media server that Viber keeps for a limited time (the adapter keeps it as the
//! attachment's reference). A plain `GET` serves the bytes: the URL is signed (`Expires`,
//! `Signature`), no token is sent. The callback announces `file_size`, which the router checks;
//! the media type is the file name's (Viber announces none).
//!
//! The host: `dl-media.viber.com`, as the media URLs of Viber callbacks quoted in providers'
//! documentation show it (Gupshup's inbound message types; Viber's own examples use a
//! placeholder); stickers come from `content.cdn.viber.com` and are not attachments here. An
//! account whose URLs come from elsewhere lists its hosts in `media_hosts`.
//!
//! Pure: the request is built here; the router does the HTTP.
//!
//! Documents followed: <https://developers.viber.com/docs/api/rest-bot-api/#callbacks>
//! (`message.media`, `file_name`, `file_size`),
//! <https://creators.viber.com/docs/bots-api/data-models/message>.

use crate::media::{Auth, Download, url_under};

/// Viber's media host (https only).
pub const MEDIA_HOSTS: [&str; 1] = ["dl-media.viber.com"];

/// The download of an attachment whose reference is its `media` URL.
pub fn download(reference: &str) -> Result<Download, String> {
    url_under(reference, "/").map_err(|why| format!("not a Viber media URL: {why}"))?;
    Ok(Download {
        url: reference.to_owned(),
        auth: Auth::None,
    })
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::attachment::Content;

    use super::*;
    use crate::viber::tests::event;

    #[test]
    fn a_picture_downloads_from_its_media_url_without_credentials() {
        let event = event(include_str!("fixtures/message-picture.json"));
        let Some(Content::Reference(reference)) = &event.attachments[0].content else {
            panic!("a reference: {:?}", event.attachments)
        };
        let download = download(reference).unwrap();
        assert_eq!(
            download.url,
            "https://dl-media.viber.com/1/share/2/long/vibes/bots/photo/jpg/3f9c2e7a14b84d0fa6e1c5b2d8a7f4e3.jpg"
        );
        assert_eq!(download.auth, Auth::None);
        assert_eq!(event.attachments[0].size_bytes, 284113, "the size the router checks");
        for not_a_url in [
            "5920486909615334401",
            "ftp://dl-media.viber.com/x",
            "https://user@dl-media.viber.com/x",
        ] {
            assert!(super::download(not_a_url).is_err(), "{not_a_url}");
        }
    }
}
