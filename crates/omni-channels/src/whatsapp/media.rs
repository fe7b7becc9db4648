//! The customer's photo, voice note or document from the WhatsApp Cloud API: a media message
//! carries only a media id; `GET /<version>/<media id>` (with the business's access token) gives
//! a short-lived download URL with the type, size and SHA-256, and `GET <url>` (same token)
//! gives the bytes. The URL expires minutes after it is issued: it is asked for right before the
//! download, never stored.
//!
//! Pure: the requests are built and the answers read here; the router does the HTTP.
//!
//! Documents followed: <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media#retrieve-media-url>
//! (`url`, `mime_type`, `sha256`, `file_size`, `id`; the URL valid for 5 minutes),
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media#download-media>
//! (GET the URL with `Authorization: Bearer`; 404 once expired).

use serde_json::Value;

/// What the Graph API says about one media id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaInfo {
    /// Where to download it, for a few minutes.
    pub url: String,
    /// Its media type.
    pub mime_type: String,
    /// Its size in bytes, when given.
    pub file_size: Option<u64>,
}

/// The URL that describes media `id`; `None` for an id that is not one (media ids are digits).
pub fn info_url(api_base_url: &str, api_version: &str, id: &str) -> Option<String> {
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{}/{api_version}/{id}", api_base_url.trim_end_matches('/')))
}

/// Reads the answer to [`info_url`].
pub fn read_info(body: &[u8]) -> Result<MediaInfo, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("the media answer is not JSON: {e}"))?;
    let url = answer["url"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or("the media answer has no url")?;
    Ok(MediaInfo {
        url: url.to_owned(),
        mime_type: answer["mime_type"].as_str().unwrap_or_default().to_owned(),
        // Documented as a number, seen as a string.
        file_size: answer["file_size"]
            .as_u64()
            .or_else(|| answer["file_size"].as_str().and_then(|s| s.parse().ok())),
    })
}

/// Whether a download URL may be fetched: https on one of `hosts` (Meta's media CDN), or on the
/// API's own host (a local stand-in). Nothing else is fetched, whatever an answer says.
pub fn allowed_url(url: &str, api_base_url: &str, hosts: &[String]) -> bool {
    let (Ok(url), Ok(api)) = (http::Uri::try_from(url), http::Uri::try_from(api_base_url)) else {
        return false;
    };
    let same_origin = url.scheme() == api.scheme() && url.authority() == api.authority();
    let cdn = url.scheme_str() == Some("https") && url.host().is_some_and(|host| hosts.iter().any(|h| h == host));
    same_origin || cdn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_info_url_takes_only_a_media_id() {
        assert_eq!(
            info_url("https://graph.facebook.com/", "v21.0", "1037543291543636").as_deref(),
            Some("https://graph.facebook.com/v21.0/1037543291543636")
        );
        assert_eq!(info_url("https://graph.facebook.com", "v21.0", "../me"), None);
        assert_eq!(info_url("https://graph.facebook.com", "v21.0", "https://evil.example/x"), None);
    }

    #[test]
    fn the_media_answer_is_read_as_documented() {
        let answer = br#"{"messaging_product":"whatsapp","url":"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1037&ext=1&hash=ATs","mime_type":"image/jpeg","sha256":"55b21c0c5b72b99f9f6ca811d0903d1c24fa087b65535336246689ba7899a8ab","file_size":"303833","id":"1037543291543636"}"#;
        let info = read_info(answer).unwrap();
        assert_eq!(info.mime_type, "image/jpeg");
        assert_eq!(info.file_size, Some(303_833));
        assert!(info.url.starts_with("https://lookaside.fbsbx.com/"));
        assert!(read_info(br#"{"error":{"message":"Invalid OAuth access token","code":190}}"#).is_err());
    }

    #[test]
    fn only_the_cdn_or_the_api_itself_is_fetched() {
        let hosts = vec!["lookaside.fbsbx.com".to_owned()];
        let api = "https://graph.facebook.com";
        assert!(allowed_url(
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
            api,
            &hosts
        ));
        assert!(!allowed_url("http://lookaside.fbsbx.com/x", api, &hosts), "not https");
        assert!(!allowed_url("https://169.254.169.254/latest/meta-data", api, &hosts));
        assert!(!allowed_url("https://lookaside.fbsbx.com.evil.example/x", api, &hosts));
        assert!(allowed_url("http://127.0.0.1:9000/media/1", "http://127.0.0.1:9000", &hosts));
        assert!(!allowed_url("http://127.0.0.1:9001/media/1", "http://127.0.0.1:9000", &hosts));
    }
}
