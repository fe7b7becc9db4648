//! The customer's photo, video, voice note or file from Messenger and Instagram: an attachment
//! in a `messages` webhook carries `payload.url`, a signed URL on Meta's CDN that expires (the
//! adapter keeps it as the attachment's reference). A plain `GET` serves the bytes; no token is
//! needed, and the Page access token is sent only when configured. Meta announces no size or
//! hash, and the type only as the attachment's kind (`image`, `video`, `audio`, `file`): the
//! router checks what is served against that.
//!
//! Hosts seen in Meta's payloads and documentation: `scontent*.xx.fbcdn.net` (Messenger images
//! and videos), `cdn.fbsbx.com` (Messenger files), `lookaside.fbsbx.com` (Instagram's
//! `ig_messaging_cdn`, which may redirect to `*.cdninstagram.com` or `*.fbcdn.net`).
//!
//! Pure: the request is built here; the router does the HTTP.
//!
//! Documents followed: <https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages>
//! (`attachments[].payload.url`), <https://developers.facebook.com/docs/messenger-platform/instagram/features/webhook>.

use crate::media::{Auth, Download, url_under};

/// Meta's CDN hosts (https only; `*.` any subdomain).
pub const CDN_HOSTS: [&str; 4] = ["*.fbcdn.net", "cdn.fbsbx.com", "lookaside.fbsbx.com", "*.cdninstagram.com"];

/// The download of an attachment whose reference is its `payload.url`; with the Page access
/// token as bearer when one is given.
pub fn download(reference: &str, page_access_token: Option<&str>) -> Result<Download, String> {
    url_under(reference, "/").map_err(|why| format!("not a Meta CDN URL: {why}"))?;
    let auth = match page_access_token.filter(|token| !token.is_empty()) {
        Some(token) => Auth::Bearer(token.to_owned()),
        None => Auth::None,
    };
    Ok(Download {
        url: reference.to_owned(),
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::tests::normalize;
    use crate::{instagram::INSTAGRAM, messenger::MESSENGER};

    fn references(event: &omni_proto::v1::ConversationEvent) -> Vec<String> {
        event
            .attachments
            .iter()
            .filter_map(|file| match &file.content {
                Some(omni_proto::v1::attachment::Content::Reference(reference)) => Some(reference.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn messenger_attachments_download_from_their_cdn_urls() {
        let event = normalize(&MESSENGER, include_str!("../messenger/fixtures/attachments.json"), 0).unwrap();
        let downloads: Vec<Download> = references(&event).iter().map(|r| download(r, None).unwrap()).collect();
        assert_eq!(downloads.len(), 2, "the photo and the PDF");
        assert!(
            downloads[0]
                .url
                .starts_with("https://scontent.xx.fbcdn.net/v/t1.15752-9/468839425_1234567890_n.jpg?_nc_cat=104")
        );
        assert!(
            downloads[1]
                .url
                .starts_with("https://cdn.fbsbx.com/v/t59.2708-21/471234567_n.pdf/iade-formu.pdf?")
        );
        assert!(downloads.iter().all(|d| d.auth == Auth::None));
    }

    #[test]
    fn instagram_media_downloads_with_the_page_token_when_configured() {
        let event = normalize(&INSTAGRAM, include_str!("../instagram/fixtures/media.json"), 0).unwrap();
        let download = download(&references(&event)[0], Some("EAAB-page")).unwrap();
        assert_eq!(
            download.url,
            "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17912345678901234&signature=AbCdEf"
        );
        assert_eq!(download.auth, Auth::Bearer("EAAB-page".into()));
        assert!(super::download("mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c", None).is_err(), "not a URL");
    }
}
